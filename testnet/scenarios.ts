/**
 * Testnet scenarios: which synthetic images each site holds, which VM migrates from site A to
 * site B, and the measured outcome (tiers, WAN bytes counted by memfabric and by the emulator,
 * time, the floor, and whether the destination's file is byte-identical to the source's).
 *
 * Images are prepared apart from the network (`prepareScenario`) so the benchmark can send the
 * very same files with the other tools. `planFromImages` plans a scenario from image files made
 * elsewhere (e.g. real guest RAM, bench/guest-images.ts).
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { zstdCompressSync, constants as zlibConstants } from 'node:zlib'
import { logger } from '@libp2p/logger'
import { DEFAULT_MIGRATION_OUT_DIR } from '../node/constants.ts'
import type { MigrationReport, Tier, TierFigures } from '../node/migration/index.ts'
import { ScenarioError } from './errors.ts'
import { Chunker, encodeRoot } from '../store/manifest.ts'
import type { Block } from '../store/manifest.ts'
import { DEFAULT_CHUNK_MAX, DEFAULT_CHUNK_MIN, DEFAULT_CHUNK_MODULUS } from '../store/options.ts'
import { PAGE_SIZE, evolveImage, writeImage } from './synthetic.ts'
import type { Testnet, TestnetNode } from './testnet.ts'
import type { WanLinkStats } from './wan/index.ts'
import { DEFAULT_SCENARIO_SIZE } from './constants.ts'
import type { ScenarioName } from './constants.ts'

const log = logger('memfabric:testnet')


export const SCENARIOS: Record<ScenarioName, string> = {
  family: 'a VM cloned from the family template migrates A→B, where siblings of the same template already run',
  return: 'a VM migrates back A→B, where its older snapshot still is (it came to A from B, so A holds that snapshot too)',
  unrelated: 'a VM with nothing in common with site B (B runs another family) migrates A→B'
}

/** Share of an image that is the family template (kernel, libraries, page cache) */
export const FAMILY_TEMPLATE_SHARE = 0.5
/** Share of pages that differ between the older snapshot and the returning VM */
export const RETURN_CHANGE_FRACTION = 0.1
/** zstd level of the floor (the default level of the zstd CLI) */
export const FLOOR_ZSTD_LEVEL = 3
/** How long the WAN must be quiet before a migration starts, ms */
export const QUIET_MS = 750
/** How long to wait for a quiet WAN at most, ms */
export const QUIET_TIMEOUT_MS = 20_000

export { ScenarioError }

export interface ImageFile {
  path: string
  name: string
}

export interface ScenarioPlan {
  /** One of SCENARIO_NAMES for the synthetic scenarios; any label for a plan from image files */
  scenario: string
  description: string
  sizeBytes: number
  /** The VM that migrates, imported on the first host of site A */
  source: ImageFile
  /** Images already held in site B, by host number (1-based) */
  siteB: Array<ImageFile & { host: number }>
  /** Older images the source host holds besides the VM (none unless the VM came from elsewhere) */
  sourceAlso: ImageFile[]
  /** The host of site B the VM migrates to */
  destHost: number
  /** The image of site B closest to the source (basis for rsync / zstd --patch-from) */
  closest?: ImageFile
}

/**
 * Write the images of a scenario into `dir` (files already there with the right size are kept:
 * the generator is deterministic). `hostsB` is the number of hosts of site B.
 */
export async function prepareScenario (scenario: ScenarioName, dir: string, sizeBytes: number = DEFAULT_SCENARIO_SIZE, hostsB = 3): Promise<ScenarioPlan> {
  if (!(scenario in SCENARIOS)) throw new ScenarioError(`unknown scenario '${scenario}' (one of ${Object.keys(SCENARIOS).join(', ')})`)
  if (sizeBytes % PAGE_SIZE !== 0 || sizeBytes <= 0) throw new ScenarioError(`image size must be a positive multiple of ${PAGE_SIZE}`)
  await mkdir(dir, { recursive: true })
  const pages = sizeBytes / PAGE_SIZE
  const mib = Math.round(sizeBytes / 2 ** 20)
  const file = (name: string): string => join(dir, `${scenario}-${name}-${mib}MiB.mem`)
  const destHost = hostsB
  // holders: every site-B host but the destination (the destination itself when B has one host)
  const holders = hostsB > 1 ? Array.from({ length: hostsB - 1 }, (_, i) => i + 1) : [1]
  const family = (seed: number, templateSeed: number): Parameters<typeof writeImage>[1] => ({
    sizeBytes, seed, template: { seed: templateSeed, pages: Math.floor(pages * FAMILY_TEMPLATE_SHARE) }
  })
  const ensure = async (path: string, make: () => Promise<unknown>): Promise<void> => {
    const size = await stat(path).then(s => s.size, () => -1)
    if (size !== sizeBytes) await make()
  }
  const plan: ScenarioPlan = { scenario, description: SCENARIOS[scenario], sizeBytes, source: { path: '', name: '' }, siteB: [], sourceAlso: [], destHost }
  if (scenario === 'family') {
    plan.source = { path: file('vm1'), name: 'vm1' }
    await ensure(plan.source.path, async () => writeImage(plan.source.path, family(101, 7)))
    for (const [i, host] of holders.entries()) {
      const sibling = { path: file(`sibling${i + 1}`), name: `sibling${i + 1}`, host }
      await ensure(sibling.path, async () => writeImage(sibling.path, family(201 + i, 7)))
      plan.siteB.push(sibling)
    }
  } else if (scenario === 'return') {
    const older = { path: file('vm1-t1'), name: 'vm1@t1' }
    plan.source = { path: file('vm1-t2'), name: 'vm1@t2' }
    await ensure(older.path, async () => writeImage(older.path, family(301, 8)))
    await ensure(plan.source.path, async () => evolveImage(older.path, plan.source.path, { changeFraction: RETURN_CHANGE_FRACTION, seed: 302 }))
    plan.siteB.push({ ...older, host: holders[0] })
    plan.sourceAlso.push(older)
  } else {
    plan.source = { path: file('vm1'), name: 'vm1' }
    await ensure(plan.source.path, async () => writeImage(plan.source.path, { sizeBytes, seed: 401 }))
    for (const [i, host] of holders.entries()) {
      const other = { path: file(`other${i + 1}`), name: `other${i + 1}`, host }
      await ensure(other.path, async () => writeImage(other.path, family(501 + i, 9)))
      plan.siteB.push(other)
    }
  }
  return await planFromImages({ ...plan, closest: plan.siteB[0] })
}

export interface ImagePlanInit {
  /** A label for the scenario (file names and reports) */
  scenario: string
  description: string
  /** The VM that migrates, imported on the first host of site A */
  source: ImageFile
  /** Images already held in site B, by host number (1-based) */
  siteB: Array<ImageFile & { host: number }>
  /** Older images the source host holds besides the VM */
  sourceAlso?: ImageFile[]
  /** The host of site B the VM migrates to */
  destHost: number
  /**
   * Basis for rsync / zstd --patch-from; by default the site-B image that holds the most of
   * the source's distinct non-zero pages (the first one on a tie)
   */
  closest?: ImageFile
}

/**
 * Plan a scenario from image files that already exist: every image must be whole pages and
 * the same size as the source (the size of the plan).
 */
export async function planFromImages (init: ImagePlanInit): Promise<ScenarioPlan> {
  const sizeOf = async (img: ImageFile): Promise<number> => {
    const s = await stat(img.path).catch((err: Error) => { throw new ScenarioError(`image ${img.name}: cannot read ${img.path}: ${err.message}`, { cause: err }) })
    if (!s.isFile()) throw new ScenarioError(`image ${img.name}: ${img.path} is not a file`)
    return s.size
  }
  const sizeBytes = await sizeOf(init.source)
  if (sizeBytes % PAGE_SIZE !== 0 || sizeBytes <= 0) throw new ScenarioError(`image ${init.source.name}: size ${sizeBytes} is not a positive multiple of ${PAGE_SIZE}`)
  if (init.siteB.length === 0) throw new ScenarioError('site B holds no image (give at least one)')
  const sourceAlso = init.sourceAlso ?? []
  for (const img of [...init.siteB, ...sourceAlso, ...(init.closest != null ? [init.closest] : [])]) {
    const size = await sizeOf(img)
    if (size !== sizeBytes) throw new ScenarioError(`image ${img.name} is ${size} bytes, the source ${init.source.name} ${sizeBytes}`)
  }
  for (const img of init.siteB) {
    if (!Number.isInteger(img.host) || img.host < 1) throw new ScenarioError(`image ${img.name}: host must be a positive integer, not ${img.host}`)
  }
  if (!Number.isInteger(init.destHost) || init.destHost < 1) throw new ScenarioError(`destination host must be a positive integer, not ${init.destHost}`)
  const closest = init.closest ?? (init.siteB.length === 1 ? init.siteB[0] : await mostShared(init.source.path, init.siteB))
  return {
    scenario: init.scenario,
    description: init.description,
    sizeBytes,
    source: init.source,
    siteB: init.siteB,
    sourceAlso,
    destHost: init.destHost,
    closest
  }
}

/** The candidate holding the most of the image's distinct non-zero pages (the first on a tie). */
async function mostShared<T extends ImageFile> (image: string, candidates: T[]): Promise<T> {
  const { hashes } = await pageHashes(image)
  let best = candidates[0]
  let bestCount = -1
  for (const candidate of candidates) {
    let count = 0
    for (const h of (await pageHashes(candidate.path)).hashes) if (hashes.has(h)) count++
    if (count > bestCount) { best = candidate; bestCount = count }
  }
  return best
}

export interface Floor {
  /** Distinct non-zero pages of the image that no site-B image holds */
  pages: number
  /** Their bytes, uncompressed */
  bytes: number
  /** Their bytes compressed together with zstd */
  zstdBytes: number
  /** Manifest blocks of the image (root and chunks) that no site-B image's manifest has */
  manifestBytes: number
}

export interface PageCensus {
  pages: number
  zeroPages: number
  distinctPages: number
}

/** Hashes of the non-zero pages of a file, and its page counts. */
async function pageHashes (path: string, onPage?: (hash: string, page: Buffer) => void, onSlot?: (digest: Buffer | undefined) => void): Promise<{ hashes: Set<string>, census: PageCensus }> {
  const hashes = new Set<string>()
  const census: PageCensus = { pages: 0, zeroPages: 0, distinctPages: 0 }
  const zero = Buffer.alloc(PAGE_SIZE)
  let rest = Buffer.alloc(0)
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 }) as AsyncIterable<Buffer>) {
    const data = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk
    let p = 0
    for (; p + PAGE_SIZE <= data.length; p += PAGE_SIZE) {
      const page = data.subarray(p, p + PAGE_SIZE)
      census.pages++
      if (page.equals(zero)) { census.zeroPages++; onSlot?.(undefined); continue }
      const digest = createHash('sha256').update(page).digest()
      onSlot?.(digest)
      const hash = digest.toString('base64')
      if (!hashes.has(hash)) {
        hashes.add(hash)
        onPage?.(hash, page)
      }
    }
    rest = Buffer.from(data.subarray(p))
  }
  census.distinctPages = hashes.size
  return { hashes, census }
}

/**
 * The floor of a migration: the distinct non-zero pages of `image` that none of `held` has,
 * compressed with zstd — what any method must at least send across the WAN (plus names).
 */
export async function computeFloor (image: string, held: string[]): Promise<{ floor: Floor, census: PageCensus }> {
  const have = new Set<string>()
  const heldChunks = new Set<string>()
  for (const path of held) {
    const chunks = manifestChunks()
    for (const h of (await pageHashes(path, undefined, chunks.push)).hashes) have.add(h)
    for (const block of chunks.done()) heldChunks.add(block.cid.toString())
  }
  const missing: Buffer[] = []
  const chunks = manifestChunks()
  const { census } = await pageHashes(image, (hash, page) => { if (!have.has(hash)) missing.push(Buffer.from(page)) }, chunks.push)
  const blocks = chunks.done()
  const root = encodeRoot({ format: 'raw', size: census.pages * PAGE_SIZE, pageSize: PAGE_SIZE, extents: [{ offset: 0, length: census.pages * PAGE_SIZE }], pages: census.pages, chunks: blocks.map(b => b.cid) })
  const manifestBytes = root.bytes.byteLength + blocks.filter(b => !heldChunks.has(b.cid.toString())).reduce((n, b) => n + b.bytes.byteLength, 0)
  const all = Buffer.concat(missing)
  const zstdBytes = all.length > 0 ? zstdCompressSync(all, { params: { [zlibConstants.ZSTD_c_compressionLevel]: FLOOR_ZSTD_LEVEL } }).length : 0
  return { floor: { pages: missing.length, bytes: all.length, zstdBytes, manifestBytes }, census }
}

/** The manifest chunk blocks of a page sequence, cut the way an import cuts them. */
function manifestChunks (): { push: (digest: Buffer | undefined) => void, done: () => Block[] } {
  const chunker = new Chunker({ modulus: DEFAULT_CHUNK_MODULUS, min: DEFAULT_CHUNK_MIN, max: DEFAULT_CHUNK_MAX })
  const blocks: Block[] = []
  return {
    push: (digest) => { const b = chunker.push(digest); if (b != null) blocks.push(b) },
    done: () => { const b = chunker.flush(); if (b != null) blocks.push(b); return blocks }
  }
}

/** SHA-256 of a file, hex. */
export async function sha256File (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Bytes the emulator carried between two sites, per direction. */
export interface WanCount {
  /** site A → site B */
  aToB: number
  /** site B → site A */
  bToA: number
}

export function wanCount (stats: WanLinkStats[], a = 1, b = 2): WanCount {
  const bytes = (from: number, to: number): number => stats.filter(s => s.from === from && s.to === to).reduce((n, s) => n + s.bytes, 0)
  return { aToB: bytes(a, b), bToA: bytes(b, a) }
}

export interface ScenarioResult {
  scenario: string
  description: string
  root: string
  from: string
  to: string
  imageBytes: number
  pages: number
  zeroPages: number
  distinctPages: number
  tiers: Record<Tier, TierFigures>
  /** WAN bytes memfabric itself reports (received from other sites) */
  wanBytes: number
  /** Bytes the emulator counted on the A↔B links during the migration */
  emulator: WanCount
  manifestWireBytes: number
  /** Wall time of the migrate call, ms */
  durationMs: number
  /** Image bytes per second of wall time */
  throughput: number
  floor: Floor & { manifestBytes: number, totalBytes: number }
  identical: boolean
  sourceSha256: string
  destSha256: string
  report: MigrationReport
}

export interface RunOptions {
  signal?: AbortSignal
  /** Called with a one-line status as the scenario advances */
  onStatus?(status: string): void
}

/** Run a prepared scenario on a network of at least 2 sites. */
export async function runScenario (net: Testnet, plan: ScenarioPlan, options: RunOptions = {}): Promise<ScenarioResult> {
  const { signal } = options
  const status = (s: string): void => { log(s); options.onStatus?.(s) }
  if (net.sites < 2) throw new ScenarioError('a scenario needs at least 2 sites')
  const siteA = net.site(1)
  const siteB = net.site(2)
  const dest = siteB.find(n => n.host === plan.destHost) ?? siteB[siteB.length - 1]
  const src = siteA[0]
  status(`importing into site B: ${plan.siteB.map(i => `${i.name}→B${i.host}`).join(', ')}`)
  await Promise.all(plan.siteB.map(async img => nodeOf(siteB, img.host).api.importImage(img.path, { name: img.name, signal })))
  status(`importing ${plan.source.name} into ${src.name}`)
  for (const img of plan.sourceAlso) await src.api.importImage(img.path, { name: img.name, signal })
  await src.api.importImage(plan.source.path, { name: plan.source.name, signal })
  status('computing the floor')
  const { floor, census } = await computeFloor(plan.source.path, plan.siteB.map(i => i.path))
  const sourceSha256 = await sha256File(plan.source.path)
  status('waiting for a quiet WAN (announcements)')
  await waitForQuietWan(net, signal)
  const before = wanCount(net.linkStats())
  status(`migrating ${plan.source.name} ${src.name} → ${dest.name}`)
  const out = `${plan.scenario}-${plan.source.name.replace(/[^A-Za-z0-9._-]/g, '_')}.mem`
  const started = performance.now()
  const report = await src.api.migrate(plan.source.name, dest.multiaddr, { name: plan.source.name, out, signal })
  const durationMs = performance.now() - started
  const after = wanCount(net.linkStats())
  const emulator = { aToB: after.aToB - before.aToB, bToA: after.bToA - before.bToA }
  status('checking the destination file')
  const destFile = join(dest.repo, DEFAULT_MIGRATION_OUT_DIR, out)
  let destSha256 = await sha256File(destFile).catch(() => '')
  if (destSha256 === '') {
    // no memory file written: export the image from the destination's store instead
    const exported = join(dest.repo, DEFAULT_MIGRATION_OUT_DIR, `exported-${out}`)
    await dest.api.exportImage(report.root, exported, { signal })
    destSha256 = await sha256File(exported)
  }
  return {
    scenario: plan.scenario,
    description: plan.description,
    root: report.root,
    from: src.name,
    to: dest.name,
    imageBytes: report.size,
    pages: report.pages,
    zeroPages: report.zeroPages,
    distinctPages: report.distinctPages ?? census.distinctPages,
    tiers: report.tiers,
    wanBytes: report.wanBytes,
    emulator,
    manifestWireBytes: report.manifest?.wireBytes ?? 0,
    durationMs,
    throughput: report.size / (durationMs / 1000),
    floor: { ...floor, totalBytes: floor.zstdBytes + floor.manifestBytes },
    identical: destSha256 === sourceSha256,
    sourceSha256,
    destSha256,
    report
  }
}

function nodeOf (site: TestnetNode[], host: number): TestnetNode {
  return site.find(n => n.host === host) ?? site[0]
}

/** Poll the emulator until no byte crossed any link for QUIET_MS (or QUIET_TIMEOUT_MS passed). */
async function waitForQuietWan (net: Testnet, signal?: AbortSignal): Promise<void> {
  const total = (): number => net.linkStats().reduce((n, s) => n + s.bytes, 0)
  const deadline = Date.now() + QUIET_TIMEOUT_MS
  let last = total()
  let since = Date.now()
  while (Date.now() < deadline) {
    signal?.throwIfAborted()
    await new Promise(resolve => setTimeout(resolve, 100))
    const now = total()
    if (now !== last) { last = now; since = Date.now() } else if (Date.now() - since >= QUIET_MS) return
  }
  log('WAN still busy after %d ms; migrating anyway', QUIET_TIMEOUT_MS)
}
