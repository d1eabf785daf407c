/**
 * memfabric against what people use instead, on the same images and the same emulated WAN, in
 * one run — synthetic images (testnet/synthetic.ts: `family`, `return`) and real guest RAM
 * (bench/guest-images.ts: `guest-family`, `guest-return`, made when QEMU, a kernel and busybox
 * are installed, else skipped with the reason):
 *
 *   raw copy · zstd stream · zero-page elision + zstd (what QEMU multifd+zstd sends) ·
 *   rsync against the destination's closest image · zstd --patch-from that image ·
 *   memfabric migrate (a real testnet) · the floor
 *
 * Every method sends from site A (127.0.1.x) to site B (127.0.2.x) through a WanEmulator with
 * the same RTT and bandwidth; WAN bytes are the emulator's own counters, both directions.
 *
 *   node bench/compare.ts [--size 256MiB] [--scenarios family,return,guest-family,guest-return]
 *                         [--wan-rtt 40] [--wan-mbit 100] [--images DIR] [--no-docs] [--render]
 *
 * `--images DIR` keeps the images between runs (guest images take minutes to make).
 *
 * Writes bench/results/compare.json, docs/benchmark.md and docs/benchmark.svg.
 */
import { execFileSync, spawn } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createReadStream } from 'node:fs'
import net from 'node:net'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { Transform } from 'node:stream'
import type { Readable, TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createZstdCompress, constants as zlibConstants } from 'node:zlib'
import { WanEmulator } from '../testnet/wan/index.ts'
import { SCENARIO_NAMES, Testnet, prepareScenario, runScenario, wanCount } from '../testnet/index.ts'
import type { ScenarioName, ScenarioPlan, ScenarioResult } from '../testnet/index.ts'
import { formatTimeline } from '../node/migration/index.ts'
import type { TimelinePhase } from '../node/migration/index.ts'
import { GUEST_SCENARIO_NAMES, guestImagesMissing, prepareGuestScenario } from './guest-images.ts'
import type { GuestImagesInfo, GuestScenarioName } from './guest-images.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const PAGE = 4096
const MiB = 2 ** 20
const ZSTD_LEVEL = 3

interface MethodResult {
  method: string
  /** Bytes the emulator carried A→B */
  aToB: number
  /** Bytes the emulator carried B→A */
  bToA: number
  /** Wall time, ms */
  ms: number
  note?: string
  skipped?: string
}

interface ScenarioBench {
  scenario: string
  description: string
  /** Where the images come from */
  images?: 'synthetic' | 'guest'
  /** How the guest images were made (guest scenarios) */
  guest?: GuestImagesInfo
  sizeBytes: number
  closest?: string
  methods: MethodResult[]
  floor: { pages: number, zstdBytes: number, manifestBytes: number, totalBytes: number }
  memfabric?: Omit<ScenarioResult, 'report'> & { timeline?: TimelinePhase[] }
}

const { values: argv } = parseArgs({
  options: {
    size: { type: 'string', default: '256MiB' },
    /** default: family,return and, when guest images can be made here, guest-family,guest-return */
    scenarios: { type: 'string' },
    'wan-rtt': { type: 'string', default: '40' },
    'wan-mbit': { type: 'string', default: '100' },
    hosts: { type: 'string', default: '3' },
    images: { type: 'string' },
    'no-docs': { type: 'boolean', default: false },
    /** Only re-render docs/benchmark.{md,svg} from bench/results/compare.json */
    render: { type: 'boolean', default: false }
  }
})
const RESULTS = join(ROOT, 'bench/results/compare.json')
const saved = argv.render === true ? JSON.parse(await readFile(RESULTS, 'utf8')) : undefined
const sizeBytes: number = saved?.sizeBytes ?? Number.parseInt(argv.size) * (/g/i.test(argv.size) ? 1024 * MiB : /m/i.test(argv.size) ? MiB : 1)
const KNOWN = [...SCENARIO_NAMES, ...GUEST_SCENARIO_NAMES] as string[]
const isGuest = (s: string): s is GuestScenarioName => (GUEST_SCENARIO_NAMES as readonly string[]).includes(s)
const guestMissing = saved != null ? undefined : await guestImagesMissing()
/** Scenarios asked for (or the default) that this machine cannot run, with the reason */
const skippedScenarios: Array<{ scenario: string, reason: string }> = saved?.skipped ?? []
const asked: string[] = argv.scenarios?.split(',').map(s => s.trim()).filter(s => s !== '') ?? [...SCENARIO_NAMES.filter(s => s !== 'unrelated'), ...GUEST_SCENARIO_NAMES]
for (const s of asked) if (!KNOWN.includes(s)) { process.stderr.write(`bench: unknown scenario '${s}' (one of ${KNOWN.join(', ')})\n`); process.exit(2) }
if (saved == null && guestMissing !== undefined) for (const s of asked.filter(isGuest)) skippedScenarios.push({ scenario: s, reason: guestMissing })
const scenarios: string[] = saved?.runs.map((r: ScenarioBench) => r.scenario) ?? asked.filter(s => !isGuest(s) || guestMissing === undefined)
const wanRttMs: number = saved?.wanRttMs ?? Number(argv['wan-rtt'].replace(/ms$/, ''))
const wanMbit: number = saved?.wanMbit ?? Number(argv['wan-mbit'])
const hosts: number = saved?.hosts ?? Number(argv.hosts)

function say (text: string): void { process.stderr.write(`bench: ${text}\n`) }

/** The tool's version line, or undefined when it is not installed (installing it via apt-get when possible). */
function tool (name: string, versionArgs: string[]): string | undefined {
  const version = (): string | undefined => {
    try { return execFileSync(name, versionArgs, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0].trim() } catch { return undefined }
  }
  let v = version()
  if (v === undefined && process.getuid?.() === 0) {
    say(`${name} missing: apt-get install -y ${name}`)
    try { execFileSync('apt-get', ['install', '-y', '-qq', name], { stdio: 'ignore' }) } catch {
      try { execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore' }); execFileSync('apt-get', ['install', '-y', '-qq', name], { stdio: 'ignore' }) } catch {}
    }
    v = version()
  }
  return v
}

// ---- one transfer through the emulated WAN ----------------------------------------------------

/**
 * Open a sink in site B, let `send` write into a socket that crosses the emulated link from
 * site A, and measure until the sink has read everything.
 */
async function throughWan (wan: WanEmulator, send: (socket: net.Socket) => Promise<void>): Promise<{ aToB: number, bToA: number, ms: number }> {
  let received = 0
  let done!: () => void
  const finished = new Promise<void>(resolve => { done = resolve })
  const sink = net.createServer(socket => {
    socket.on('data', (chunk: Buffer) => { received += chunk.length })
    socket.on('end', () => { socket.end(); done() })
    socket.on('error', () => { done() })
  })
  await new Promise<void>(resolve => sink.listen(0, '127.0.2.1', resolve))
  const port = (sink.address() as net.AddressInfo).port
  await wan.expose({ site: 2, host: '127.0.2.1', port })
  const [host, proxyPort] = wan.dialMap(1)[`127.0.2.1:${port}`].split(':')
  const before = wanCount(wan.stats())
  const started = performance.now()
  const socket = net.connect({ host, port: Number(proxyPort), localAddress: '127.0.1.1' })
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  await send(socket)
  await finished
  const ms = performance.now() - started
  const after = wanCount(wan.stats())
  await new Promise<void>(resolve => sink.close(() => { resolve() }))
  return { aToB: after.aToB - before.aToB, bToA: after.bToA - before.bToA, ms }
}

/** Pages as QEMU multifd sends them: zero pages only as their offset, others offset + data. */
class ZeroElision extends Transform {
  private rest = Buffer.alloc(0)
  private offset = 0
  private readonly zero = Buffer.alloc(PAGE)

  override _transform (chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    const data = this.rest.length > 0 ? Buffer.concat([this.rest, chunk]) : chunk
    const out: Buffer[] = []
    let p = 0
    for (; p + PAGE <= data.length; p += PAGE, this.offset += PAGE) {
      const page = data.subarray(p, p + PAGE)
      const header = Buffer.alloc(8)
      const isZero = page.equals(this.zero)
      // bit 0 of the (page-aligned) offset flags a zero page
      header.writeBigUInt64LE(BigInt(this.offset) | (isZero ? 1n : 0n))
      out.push(header)
      if (!isZero) out.push(page)
    }
    this.rest = Buffer.from(data.subarray(p))
    callback(null, Buffer.concat(out))
  }
}

function zstdStream (): Transform {
  return createZstdCompress({ params: { [zlibConstants.ZSTD_c_compressionLevel]: ZSTD_LEVEL } })
}

async function runChild (cmd: string, args: string[], stdout?: (out: Readable) => Promise<void>): Promise<string> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  let text = ''
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const consumed = stdout != null ? stdout(child.stdout) : new Promise<void>(resolve => { child.stdout.setEncoding('utf8').on('data', (s: string) => { text += s }).on('end', resolve) })
  const code = await new Promise<number | null>((resolve, reject) => { child.once('error', reject); child.once('close', resolve) })
  await consumed
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.trim()}`)
  return text
}

// ---- the methods ---------------------------------------------------------------------------

async function raw (wan: WanEmulator, plan: ScenarioPlan): Promise<MethodResult> {
  const r = await throughWan(wan, async socket => { await pipeline(createReadStream(plan.source.path), socket) })
  return { method: 'raw copy', ...r }
}

async function zstdWhole (wan: WanEmulator, plan: ScenarioPlan): Promise<MethodResult> {
  const r = await throughWan(wan, async socket => { await pipeline(createReadStream(plan.source.path), zstdStream(), socket) })
  return { method: 'zstd stream', ...r, note: `node:zlib zstd level ${ZSTD_LEVEL}` }
}

async function zeroZstd (wan: WanEmulator, plan: ScenarioPlan): Promise<MethodResult> {
  const r = await throughWan(wan, async socket => { await pipeline(createReadStream(plan.source.path), new ZeroElision(), zstdStream(), socket) })
  return { method: 'zero pages elided + zstd', ...r, note: `like QEMU multifd + zstd: 8-byte header per page, zstd level ${ZSTD_LEVEL}` }
}

async function patchFrom (wan: WanEmulator, plan: ScenarioPlan, zstdVersion?: string): Promise<MethodResult> {
  const method = 'zstd --patch-from closest'
  if (zstdVersion === undefined) return { method, aToB: 0, bToA: 0, ms: 0, skipped: 'zstd CLI not installed' }
  if (plan.closest == null) return { method, aToB: 0, bToA: 0, ms: 0, skipped: 'no image at the destination' }
  const r = await throughWan(wan, async socket => {
    await runChild('zstd', [`-${ZSTD_LEVEL}`, '-q', '-c', `--patch-from=${plan.closest!.path}`, plan.source.path], async out => { await pipeline(out, socket) })
  })
  return { method, ...r, note: `${zstdVersion}, level ${ZSTD_LEVEL}, reference ${plan.closest.name}` }
}

/** rsync with its default block size (√size), or with `blockSize` (-B) */
async function rsync (wan: WanEmulator, plan: ScenarioPlan, work: string, rsyncVersion?: string, blockSize?: number): Promise<MethodResult> {
  const method = blockSize === undefined ? 'rsync -z against closest' : `rsync -z -B ${blockSize} against closest`
  if (rsyncVersion === undefined) return { method, aToB: 0, bToA: 0, ms: 0, skipped: 'rsync not installed' }
  if (plan.closest == null) return { method, aToB: 0, bToA: 0, ms: 0, skipped: 'no image at the destination' }
  // an rsync daemon in site B whose module already holds the basis under the target's name
  const dir = join(work, `rsync-${plan.scenario}`)
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true })
  await copyFile(plan.closest.path, join(dir, 'vm.mem'))
  const port = await new Promise<number>((resolve, reject) => {
    const s = net.createServer().once('error', reject).listen(0, '127.0.2.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => { resolve(p) }) })
  })
  const conf = join(work, `rsyncd-${plan.scenario}.conf`)
  await writeFile(conf, [
    `pid file = ${join(work, `rsyncd-${plan.scenario}.pid`)}`,
    `uid = ${process.getuid?.() ?? 0}`, `gid = ${process.getgid?.() ?? 0}`, 'use chroot = no',
    '[vm]', `path = ${dir}`, 'read only = no', ''
  ].join('\n'))
  const daemon = spawn('rsync', ['--daemon', '--no-detach', `--config=${conf}`, '--address=127.0.2.1', `--port=${port}`], { stdio: 'ignore' })
  try {
    await waitForPort('127.0.2.1', port)
    await wan.expose({ site: 2, host: '127.0.2.1', port })
    const proxy = wan.dialMap(1)[`127.0.2.1:${port}`]
    const before = wanCount(wan.stats())
    const started = performance.now()
    const block = blockSize === undefined ? [] : [`--block-size=${blockSize}`]
    const stats = await runChild('rsync', ['--no-whole-file', '-z', '--compress-choice=zstd', ...block, '--stats', plan.source.path, `rsync://${proxy}/vm/vm.mem`])
    const ms = performance.now() - started
    const after = wanCount(wan.stats())
    const sent = /Total bytes sent: ([\d,.]+)/.exec(stats)?.[1] ?? '?'
    const literal = /Literal data: ([\d,.]+)/.exec(stats)?.[1] ?? '?'
    const same = await sameFile(plan.source.path, join(dir, 'vm.mem'))
    return {
      method,
      aToB: after.aToB - before.aToB,
      bToA: after.bToA - before.bToA,
      ms,
      note: `${rsyncVersion.replace(/\s+/g, ' ')}, rsync daemon in site B through the emulated link; rsync says sent ${sent} B, literal ${literal} B${same ? '' : '; RESULT DIFFERS'}`
    }
  } finally {
    daemon.kill('SIGTERM')
    await new Promise(resolve => { if (daemon.exitCode != null) resolve(undefined); else daemon.once('exit', resolve) })
    await rm(dir, { recursive: true, force: true })
  }
}

async function memfabric (plan: ScenarioPlan): Promise<{ method: MethodResult, result: ScenarioResult }> {
  const tn = await Testnet.create({ sites: 2, hosts, wanRttMs, wanMbit })
  try {
    const result = await runScenario(tn, plan, { onStatus: s => { say(`  memfabric: ${s}`) } })
    if (!result.identical) throw new Error(`memfabric ${plan.scenario}: destination differs from the source`)
    const site = result.tiers.site.pages
    const source = result.tiers.source.pages
    return {
      method: { method: 'memfabric migrate', aToB: result.emulator.aToB, bToA: result.emulator.bToA, ms: result.durationMs, note: `${hosts} hosts per site; pages from site B ${site}, from the source ${source} (${result.report.delta?.pages ?? 0} of them as deltas), local ${result.tiers.local.pages}; manifest ${mib(result.manifestWireBytes)} MiB; byte-identical` },
      result
    }
  } finally {
    await tn.stop()
  }
}

async function waitForPort (host: string, port: number): Promise<void> {
  const deadline = Date.now() + 10_000
  while (true) {
    const ok = await new Promise<boolean>(resolve => {
      const s = net.connect({ host, port }, () => { s.destroy(); resolve(true) }).once('error', () => { resolve(false) })
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

async function sameFile (a: string, b: string): Promise<boolean> {
  const { sha256File } = await import('../testnet/index.ts')
  return (await sha256File(a)) === (await sha256File(b))
}

// ---- output ------------------------------------------------------------------------------

function mib (bytes: number): string { return (bytes / MiB).toFixed(bytes < 10 * MiB ? 2 : 1) }
function ratio (x: number): string { return Number.isFinite(x) ? (x >= 10 ? x.toFixed(0) : x.toFixed(1)) + '×' : '–' }

function wanOf (run: ScenarioBench, method: string): number {
  const m = run.methods.find(m => m.method === method)
  return m == null || m.skipped != null ? NaN : m.aToB + m.bToA
}

function guestLine (info: GuestImagesInfo): string {
  const guests = info.guests.map(g => `${g.name} (seed ${g.seed}, scale ${g.scale}, role ${g.role}${g.steps > 1 ? `, ${g.steps} steps` : ''})`).join(', ')
  const snaps = info.images.map(i => `${i.name} after step ${i.step}, ${(i.ms / 1000).toFixed(0)} s after QEMU started`).join('; ')
  return `Real guest RAM made ${info.made} (${info.qemu.replace(/^QEMU emulator version\s*/, 'QEMU ')}, TCG, 1 vCPU, ${info.sizeBytes / MiB} MiB, kernel \`${info.kernel}\`): ${guests}. Snapshots: ${snaps}.`
}

function markdown (runs: ScenarioBench[], meta: Record<string, string>, skipped: Array<{ scenario: string, reason: string }> = []): string {
  const lines: string[] = []
  lines.push('# memfabric against the alternatives', '')
  lines.push(`Generated by \`npm run bench\` (\`node bench/compare.ts --size ${sizeBytes / MiB}MiB --scenarios ${scenarios.join(',')}\`) on **${meta.date}**.`, '')
  lines.push(`**Machine:** ${meta.machine}. ${meta.software}.`, '')
  if (meta.conditions != null) lines.push(`**Conditions:** ${meta.conditions}`, '')
  lines.push(`**Link:** site A (127.0.1.x) → site B (127.0.2.x) through the user-space WAN emulator (\`testnet/wan\`), ${wanRttMs} ms RTT, ${wanMbit} Mbit/s per direction. WAN bytes are the emulator's own counters, both directions, for every method. Every image is ${sizeBytes / MiB} MiB. ${images(runs)}`, '')
  for (const s of skipped) lines.push(`**Skipped:** \`${s.scenario}\` — ${s.reason}.`, '')
  lines.push('![WAN bytes per method](benchmark.svg)', '')
  lines.push('## Summary', '')
  lines.push('WAN MiB per method (both directions, emulator counters); ratios are of WAN bytes. "QEMU-like" is zero pages elided + zstd.', '')
  lines.push('| scenario | images | zero pages | floor | memfabric | memfabric ÷ floor | QEMU-like | QEMU-like ÷ memfabric | rsync -z | rsync -z -B 4096 | zstd --patch-from |')
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const run of runs) {
    const mf = wanOf(run, 'memfabric migrate')
    const qemu = wanOf(run, 'zero pages elided + zstd')
    const m = (x: number): string => Number.isFinite(x) ? mib(x) : '–'
    const zero = run.memfabric != null ? `${((100 * run.memfabric.zeroPages) / run.memfabric.pages).toFixed(0)} %` : '–'
    lines.push(`| ${run.scenario} | ${run.images === 'guest' ? 'real guest RAM' : 'synthetic'} | ${zero} | ${mib(run.floor.totalBytes)} | **${m(mf)}** | ${(mf / run.floor.totalBytes).toFixed(2)} | ${m(qemu)} | ${ratio(qemu / mf)} | ${m(wanOf(run, 'rsync -z against closest'))} | ${m(wanOf(run, `rsync -z -B ${PAGE} against closest`))} | ${m(wanOf(run, 'zstd --patch-from closest'))} |`)
  }
  lines.push('')
  lines.push('## Time beside bytes', '')
  lines.push(`Wall time of each method, and the link time of its own WAN bytes (both directions, emulator counters) at ${wanMbit} Mbit/s; "× link" is wall ÷ link time. For memfabric, the target of issue 15 is 1.2 × the larger of (a) that link time and (b) the time the destination's site needs to hand over its share, + 3 RTT; (b) below is the span of the pull's \`fetch:site\` phase in its own timeline — the site's delivery in this run, not an independent measurement of the site's verified page-fetch speed.`, '')
  lines.push('| scenario | method | wall s | link s | × link |')
  lines.push('|---|---|---:|---:|---:|')
  for (const run of runs) {
    for (const m of run.methods) {
      if (m.skipped != null) continue
      const link = (m.aToB + m.bToA) * 8 / (wanMbit * 1e6)
      lines.push(`| ${run.scenario} | ${m.method === 'memfabric migrate' ? '**memfabric migrate**' : m.method} | ${(m.ms / 1000).toFixed(2)} | ${link.toFixed(2)} | ${(m.ms / 1000 / link).toFixed(1)} |`)
    }
  }
  lines.push('')
  lines.push('| scenario | memfabric wall s | (a) link s | (b) site phase s | target s | binds | met | fastest other method |')
  lines.push('|---|---:|---:|---:|---:|---|---|---|')
  for (const run of runs) {
    const mf = run.methods.find(m => m.method === 'memfabric migrate' && m.skipped == null)
    if (mf == null) continue
    const a = (mf.aToB + mf.bToA) * 8 / (wanMbit * 1e6)
    const site = run.memfabric?.timeline?.find(p => p.name === 'fetch:site')
    const b = site != null ? (site.endMs - site.startMs) / 1000 : 0
    const target = 1.2 * Math.max(a, b) + 3 * wanRttMs / 1000
    const others = run.methods.filter(m => m !== mf && m.skipped == null).sort((x, y) => x.ms - y.ms)
    const best = others[0]
    lines.push(`| ${run.scenario} | ${(mf.ms / 1000).toFixed(2)} | ${a.toFixed(2)} | ${site != null ? b.toFixed(2) : '–'} | ${target.toFixed(2)} | ${b > a ? '(b)' : '(a)'} | ${mf.ms / 1000 <= target ? 'yes' : 'no'} | ${best != null ? `${best.method} ${(best.ms / 1000).toFixed(2)} s (memfabric ${(mf.ms / best.ms).toFixed(1)}×)` : '–'} |`)
  }
  lines.push('')
  for (const run of runs) {
    const timeline = run.memfabric?.timeline
    if (timeline == null || timeline.length === 0) continue
    lines.push(`Timeline of memfabric's pull in \`${run.scenario}\` (ms since the destination started it):`, '', '```', formatTimeline(timeline), '```', '')
  }
  for (const run of runs) {
    const mf = run.methods.find(m => m.method === 'memfabric migrate')
    const raw = run.methods.find(m => m.method === 'raw copy')
    const mfBytes = mf != null ? mf.aToB + mf.bToA : NaN
    lines.push(`## ${run.scenario}`, '', `${run.description}. Closest image at the destination (basis for rsync and zstd --patch-from): \`${run.closest ?? 'none'}\`.`, '')
    if (run.guest != null) lines.push(guestLine(run.guest), '')
    if (run.memfabric != null) {
      const r = run.memfabric
      lines.push(`The migrating image: ${r.pages} pages, ${r.zeroPages} zero (${((100 * r.zeroPages) / r.pages).toFixed(1)} %), ${r.distinctPages} distinct non-zero.`, '')
    }
    lines.push('| method | WAN bytes (MiB) | of raw | × memfabric | wall time (s) | notes |')
    lines.push('|---|---:|---:|---:|---:|---|')
    for (const m of run.methods) {
      if (m.skipped != null) { lines.push(`| ${m.method} | – | – | – | – | skipped: ${m.skipped} |`); continue }
      const bytes = m.aToB + m.bToA
      lines.push(`| ${m.method === 'memfabric migrate' ? '**memfabric migrate**' : m.method} | ${mib(bytes)} | ${raw != null ? ((100 * bytes) / (raw.aToB + raw.bToA)).toFixed(1) + ' %' : '–'} | ${ratio(bytes / mfBytes)} | ${(m.ms / 1000).toFixed(1)} | ${m.note ?? ''} |`)
    }
    lines.push(`| *floor* | ${mib(run.floor.totalBytes)} | ${raw != null ? ((100 * run.floor.totalBytes) / (raw.aToB + raw.bToA)).toFixed(1) + ' %' : '–'} | ${ratio(run.floor.totalBytes / mfBytes)} | | ${run.floor.pages} distinct non-zero pages site B lacks, zstd level 3 (${mib(run.floor.zstdBytes)} MiB) + manifest (${mib(run.floor.manifestBytes)} MiB) |`)
    if (run.memfabric != null) {
      const r = run.memfabric
      lines.push('', `memfabric's own report: ${mib(r.wanBytes)} MiB received from other sites (emulator: ${mib(r.emulator.aToB)} MiB A→B, ${mib(r.emulator.bToA)} MiB B→A); tiers local ${r.tiers.local.pages}, site ${r.tiers.site.pages}, remote ${r.tiers.remote.pages}, source ${r.tiers.source.pages} pages; ${(r.durationMs / 1000).toFixed(1)} s.`)
    }
    lines.push('')
  }
  lines.push('## How each method is measured', '')
  lines.push('- **raw copy**, **zstd stream**, **zero pages elided + zstd**: one TCP stream from a socket in site A to a sink in site B through the emulated link; wall time from connect to the last byte read by the sink (receiver-side decompression not included). Zero elision sends an 8-byte header per page and the data of non-zero pages only, then zstd — close to what QEMU multifd with zstd sends.')
  lines.push('- **rsync**: a real `rsync --daemon` listening in site B whose module already holds the closest image under the target\'s name; the client in site A runs `rsync --no-whole-file -z --compress-choice=zstd` (once with rsync\'s default block size, √size ≈ 16 KiB at 256 MiB, once with `-B 4096`, page-sized blocks) through the emulated link (rsync:// protocol over the emulator\'s TCP proxy). Wall time is the client process from start to exit, including checksumming the basis on the receiver.')
  lines.push('- **zstd --patch-from**: `zstd -3 --patch-from=<closest> -c image` streamed through the link; wall time includes compression, not decompression at the destination.')
  lines.push('- **memfabric migrate**: a fresh `Testnet` (real daemon processes, one per host, 2 sites) with the same link; site B\'s images imported on B hosts, the VM on A1; `migrate` from A1 to the last B host; wall time of the migrate call; the destination file is checked byte-identical (sha256). Emulator bytes include everything between the sites during the call (noise, yamux, DHT).')
  lines.push('- **real guest RAM** (`guest-*`, `bench/guest-images.ts`): QEMU guests under TCG (q35, 1 vCPU, RAM in a `memory-backend-file`) boot Debian\'s cloud kernel from `/boot` with a static-busybox initramfs (`bench/guest-initramfs.sh`; the kernel\'s own defaults, KASLR included). Init mounts a tmpfs and runs a seeded workload: an access log (text, ~5.5 MB per unit of scale in step 1, the seed in every line), process heap churn (awk tables, sort), a gzip\'d backup of the system (the same input in every guest), the gzip\'d log, random bytes as keys, checksums; `db` guests also build and keep a sorted table and a copy of their log. When a step is done the guest prints a marker and waits on its second serial port; the host `stop`s it over QMP, copies the RAM file and `cont`s it. `guest-family`: vm1 and its siblings boot side by side, each with its own seed, amount and role, one step each. `guest-return`: one guest, RAM after step 1 (t1) and after step 2 (t2: more log lines, the old compressed log replaced by a new one, more heap churn, new keys). rsync and zstd --patch-from get as basis the site-B image that holds the most of the VM\'s distinct pages. The kernel keeps its defaults: KASLR relocates it differently at every boot, so kernel pages of siblings booted independently differ by their relocated addresses — page-granular dedup (the floor, memfabric, rsync -B 4096) misses them, zstd --patch-from\'s byte-level matches do not; siblings booted with `nokaslr`, or restored from one template snapshot, share them. Not bit-for-bit reproducible (KASLR, timing); the images are cached by size with a JSON of how they were made.')
  lines.push('- **floor** (page granularity): distinct non-zero pages of the image that no site-B image holds (hashing every page), compressed together with zstd level 3, plus the manifest blocks no site-B image\'s manifest has (cut the way an import cuts them) — what a method that ships whole missing pages and a content-addressed manifest must send. Byte-level deltas go below it when pages are only partly rewritten (the `return` scenario rewrites ~40 % of its changed pages only partly): rsync and zstd --patch-from do, and so does memfabric when the source holds an older image of the VM (it sends such pages compressed against the older page the destination site holds, and rebuilds the manifest from the older manifest plus a patch). memfabric also goes below it with a higher zstd level across sites (8, against the floor\'s 3) and, without an older image, by sending a thin manifest (8-byte digest prefixes) instead of the manifest blocks.')
  lines.push('', 'Raw results: `bench/results/compare.json`.', '')
  return lines.join('\n')
}

/** What the images of the runs are: for the text, or short for the chart title. */
function images (runs: ScenarioBench[], short = false): string {
  const synthetic = runs.filter(r => r.images !== 'guest').map(r => r.scenario)
  const guest = runs.filter(r => r.images === 'guest').map(r => r.scenario)
  // the chart's title is one line: each scenario's label says what its images are
  if (short) return guest.length > 0 ? 'VMs' : 'synthetic VM'
  const parts: string[] = []
  if (synthetic.length > 0) parts.push(`${synthetic.map(s => `\`${s}\``).join(', ')}: **synthetic** images (\`testnet/synthetic.ts\`), ~25 % zero pages`)
  if (guest.length > 0) parts.push(`${guest.map(s => `\`${s}\``).join(', ')}: **real guest RAM** of QEMU guests (\`bench/guest-images.ts\`, see "How each method is measured")`)
  return parts.join('; ') + '.'
}

function svg (runs: ScenarioBench[]): string {
  const rows: Array<{ label: string, bytes: number, ms?: number, kind: 'mf' | 'floor' | 'base', group: string }> = []
  for (const run of runs) {
    for (const m of run.methods) if (m.skipped == null) rows.push({ label: m.method, bytes: m.aToB + m.bToA, ms: m.ms, kind: m.method === 'memfabric migrate' ? 'mf' : 'base', group: run.scenario })
    rows.push({ label: 'floor (page granularity)', bytes: run.floor.totalBytes, kind: 'floor', group: run.scenario })
  }
  const max = Math.max(...rows.map(r => r.bytes))
  const barH = 18
  const gap = 4
  const left = 220
  const width = 760
  const plotW = width - left - 130
  let y = 40
  const parts: string[] = []
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')
  for (const run of runs) {
    parts.push(`<text x="10" y="${y + 12}" font-weight="bold">${esc(run.scenario)}${run.images === 'guest' ? ' (real guest RAM)' : run.images === 'synthetic' ? ' (synthetic)' : ''}</text>`)
    y += 20
    for (const r of rows.filter(r => r.group === run.scenario)) {
      const w = Math.max(1, (r.bytes / max) * plotW)
      const fill = r.kind === 'mf' ? '#1f77b4' : r.kind === 'floor' ? '#2ca02c' : '#aaaaaa'
      parts.push(`<text x="${left - 8}" y="${y + 13}" text-anchor="end">${esc(r.label)}</text>`)
      parts.push(`<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${fill}"/>`)
      parts.push(`<text x="${(left + w + 6).toFixed(1)}" y="${y + 13}">${mib(r.bytes)} MiB${r.ms != null ? ` · ${(r.ms / 1000).toFixed(0)} s` : ''}</text>`)
      y += barH + gap
    }
    y += 14
  }
  const height = y + 10
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">WAN bytes A↔B, ${sizeBytes / MiB} MiB ${images(runs, true)}, ${wanRttMs} ms RTT, ${wanMbit} Mbit/s (fewer is better; wall time after ·)</text>`,
    ...parts,
    '</svg>',
    ''
  ].join('\n')
}

// ---- main ----------------------------------------------------------------------------------

if (saved != null) {
  await writeFile(join(ROOT, 'docs/benchmark.md'), markdown(saved.runs, saved, saved.skipped))
  await writeFile(join(ROOT, 'docs/benchmark.svg'), svg(saved.runs))
  say('docs/benchmark.md and docs/benchmark.svg re-rendered from bench/results/compare.json')
  process.exit(0)
}

const loadStart = loadavg()[0]
const work = await mkdtemp(join(tmpdir(), 'memfabric-bench-'))
const imagesDir = argv.images ?? join(work, 'images')
const zstdVersion = tool('zstd', ['--version'])?.replace(/.*?(v\d+\.\d+\.\d+).*/, 'zstd $1')
const rsyncVersion = tool('rsync', ['--version'])?.replace(/^rsync\s+version\s+(\S+).*/, 'rsync $1')
const runs: ScenarioBench[] = []
try {
  for (const { scenario, reason } of skippedScenarios) say(`${scenario}: skipped (${reason})`)
  for (const scenario of scenarios) {
    let plan: ScenarioPlan
    let guest: GuestImagesInfo | undefined
    if (isGuest(scenario)) {
      say(`${scenario}: real guest RAM images of ${sizeBytes / MiB} MiB`)
      ;({ plan, info: guest } = await prepareGuestScenario(scenario, imagesDir, sizeBytes, hosts, { onStatus: s => { say(`  ${s}`) } }))
    } else {
      say(`${scenario}: generating ${sizeBytes / MiB} MiB images`)
      plan = await prepareScenario(scenario as ScenarioName, imagesDir, sizeBytes, hosts)
    }
    const wan = await WanEmulator.create({ sites: [{ id: 1, name: 'A' }, { id: 2, name: 'B' }], wanRttMs, wanMbit })
    const methods: MethodResult[] = []
    try {
      for (const run of [raw, zstdWhole, zeroZstd]) {
        methods.push(await run(wan, plan))
        say(`  ${methods.at(-1)!.method}: ${mib(methods.at(-1)!.aToB)} MiB in ${(methods.at(-1)!.ms / 1000).toFixed(1)} s`)
      }
      methods.push(await rsync(wan, plan, work, rsyncVersion))
      say(`  rsync: ${mib(methods.at(-1)!.aToB)} MiB in ${(methods.at(-1)!.ms / 1000).toFixed(1)} s`)
      // page-sized blocks: rsync tuned for memory images
      methods.push(await rsync(wan, plan, work, rsyncVersion, PAGE))
      say(`  rsync -B ${PAGE}: ${mib(methods.at(-1)!.aToB)} MiB in ${(methods.at(-1)!.ms / 1000).toFixed(1)} s`)
      methods.push(await patchFrom(wan, plan, zstdVersion))
      say(`  patch-from: ${mib(methods.at(-1)!.aToB)} MiB in ${(methods.at(-1)!.ms / 1000).toFixed(1)} s`)
    } finally {
      await wan.close()
    }
    const { method, result } = await memfabric(plan)
    methods.push(method)
    say(`  memfabric: ${mib(method.aToB)} MiB in ${(method.ms / 1000).toFixed(1)} s`)
    const { report: _report, ...summary } = result
    runs.push({
      scenario,
      description: plan.description,
      images: guest != null ? 'guest' : 'synthetic',
      ...(guest != null ? { guest } : {}),
      sizeBytes,
      closest: plan.closest?.name,
      methods,
      floor: { pages: result.floor.pages, zstdBytes: result.floor.zstdBytes, manifestBytes: result.floor.manifestBytes, totalBytes: result.floor.totalBytes },
      memfabric: { ...summary, timeline: _report.timeline }
    })
  }
  const cpu = cpus()
  const meta = {
    date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
    machine: `this ${cpu.length}-core box (${cpu[0]?.model.trim() ?? 'unknown CPU'}), ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Linux`,
    software: `Node ${process.version}, ${zstdVersion ?? 'no zstd CLI'}, ${rsyncVersion ?? 'no rsync'}`,
    conditions: `1-minute load average ${loadStart.toFixed(1)} at the start, ${loadavg()[0].toFixed(1)} at the end (2 cores). WAN bytes do not depend on load; wall times do, memfabric's most (a testnet is ${2 * hosts} daemon processes plus the emulator on the same cores).`
  }
  await mkdir(join(ROOT, 'bench/results'), { recursive: true })
  await writeFile(RESULTS, JSON.stringify({ ...meta, sizeBytes, wanRttMs, wanMbit, hosts, skipped: skippedScenarios, runs }, null, 2) + '\n')
  if (argv['no-docs'] !== true) {
    await mkdir(join(ROOT, 'docs'), { recursive: true })
    await writeFile(join(ROOT, 'docs/benchmark.md'), markdown(runs, meta, skippedScenarios))
    await writeFile(join(ROOT, 'docs/benchmark.svg'), svg(runs))
  }
  process.stdout.write(markdown(runs, meta, skippedScenarios))
} finally {
  await rm(work, { recursive: true, force: true })
}
