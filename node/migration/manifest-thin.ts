/**
 * Rebuild manifest chunks from the source's thin manifest (digest prefixes, ~9 bytes a slot
 * instead of 36): a prefix the own store holds a page for resolves there; the other pages are
 * fetched by prefix from same-site peers, then from the source (thin-fetch.ts), and hashing
 * each gives its digest. Only when no site but ours and the source's is known: a page this site
 * lacks then has no holder nearer than the source's site, which the normal path's provider
 * lookups could not improve on. Only chunks whose CID the root lists are kept.
 */
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import type { Manifest } from '../../store/index.ts'
import { release } from '../../store/page-table.ts'
import type { ThinManifest } from '../../protocols/pages/index.ts'
import { THIN_ENTRY_BYTES, THIN_PAGE, zeroRunLength } from '../../protocols/pages/index.ts'
import { ChunkCutter, bufferOf } from './chunk-cutter.ts'
import { DEFAULT_RESOLVE_BATCH } from './constants.ts'
import type { PullContext } from './context.ts'
import { DigestLog } from './digest-log.ts'
import { absentBlocks } from './manifest-fetch.ts'
import { PrefixIndex } from './prefix-index.ts'
import { sitePeers, thirdSiteKnown } from './site.ts'
import { SlotSet } from './slot-set.ts'
import { prefetch } from './thin-fetch.ts'
import { OutputWriter } from './output.ts'
import { SlotMap } from './slot-map.ts'
import { digestToCid } from '../../store/page.ts'

const log = logger('memfabric:migration')

export interface ThinOutcome {
  /** Chunks still missing. */
  still: CID[]
  /** Every chunk was cut and every page of the image is stored: the page stage only counts slots. */
  complete: boolean
  /** Slots of the pages this pass fetched: their figures are recorded, the page stage must not count them again. */
  settled?: SlotSet
  /** The memory file, every non-zero slot written (only when `complete`): commit it instead of exporting. */
  output?: { writer: OutputWriter, slots: number }
}

/** Rebuild the chunks among `missing` of `manifest` from its thin manifest; see the file's comment for when. */
export async function rebuildFromThin (ctx: PullContext, manifest: Manifest, missing: CID[]): Promise<ThinOutcome> {
  const { deps, options, figures } = ctx
  const { root, source, signal } = options
  if (thirdSiteKnown(ctx)) return { still: missing, complete: false }
  let thin: ThinManifest | undefined
  try {
    const answer = await deps.manifestThin(source, root, { signal, maxEntries: manifest.pages })
    figures.manifestAnswer(answer.wireBytes)
    figures.timeline.add('manifest:thin', { bytesIn: answer.wireBytes, roundTrips: 1 })
    thin = answer.thin
  } catch (err: any) {
    signal?.throwIfAborted()
    log.error('source sent no thin manifest of %c - %e', root, err)
  }
  if (thin == null) return { still: missing, complete: false }
  const index = new PrefixIndex(thin)
  // the full digests of what is found go to a scratch file until the chunks are cut
  const digestLog = await DigestLog.create()
  // 1 for the pages fetched by prefix (not held before)
  const fetched = new Uint8Array(index.size)
  let replayed: Replayed = { cut: false }
  let digests: Uint8Array | undefined
  let writer: OutputWriter | undefined
  let slotMap: SlotMap | undefined
  let outputOk = false
  let complete = false
  let still = missing
  try {
    if (index.totalSlots !== manifest.pages) {
      log.error('thin manifest of %c has %d slots, the image %d', root, index.totalSlots, manifest.pages)
      return { still: missing, complete: false }
    }
    const planning = figures.timeline.begin('plan')
    // pages go to the memory file as they are found or arrive, not in an export afterwards
    if (options.out != null && OutputWriter.fits(manifest)) {
      slotMap = new SlotMap(thin, index)
      writer = await OutputWriter.create(options.out, manifest)
    }
    const out = writer == null || slotMap == null ? undefined : writeTo(writer, slotMap, index)
    let writingHeld: Promise<void> = Promise.resolve()
    for (let from = 0; from < index.size; from += DEFAULT_RESOLVE_BATCH) {
      const to = Math.min(index.size, from + DEFAULT_RESOLVE_BATCH)
      const held = await deps.store.resolvePrefixes?.(index.prefixes(from, to), { signal }) ?? []
      const cids: CID[] = []
      held.forEach((digest, j) => {
        if (digest == null) return
        index.setFound(from + j)
        digestLog.append(from + j, digest)
        if (out != null) cids.push(digestToCid(digest))
      })
      // the pages this store holds are copied to the file while the others are fetched
      if (out != null && cids.length > 0) writingHeld = writingHeld.then(async () => figures.timeline.time('output', async () => copyHeld(ctx, cids, out)))
    }
    // surfaced after the fetch; never left running behind our back
    const heldCopied = writingHeld.then(() => true, (err: any) => { log.error('copying held pages of %c to %s failed - %e', root, options.out, err); return false })
    planning.end()
    const site = sitePeers(ctx).filter(p => !p.peerId.equals(source))
    let count: number
    try {
      count = await prefetch(ctx, { index, fetched, digestLog, output: out }, site, deps.describe(source))
    } finally {
      outputOk = await heldCopied
    }
    // every page found has its record in the log
    const all = digests = new Uint8Array(index.size * 32)
    await digestLog.replay((k, digest) => { all.set(digest, k * 32) })
    replayed = await replay(thin, index, { fetched: count > 0 ? fetched : undefined, digests: all }, new ChunkCutter(deps.store, manifest, missing, signal))
    still = await absentBlocks(ctx, missing)
    complete = replayed.cut && still.length === 0
  } finally {
    if (writer != null && !(complete && outputOk)) {
      await writer.abort()
      writer = undefined
    }
    // tens of MB for a large image: free them before the pages and the export
    index.dispose()
    release(thin.entries)
    release(fetched)
    if (digests != null) release(digests)
    await digestLog.close()
  }
  figures.rebuilt(missing.length - still.length)
  log('rebuilt %d of %d manifest chunks of %c from its thin manifest (%s)', missing.length - still.length, missing.length, root, replayed.cut ? 'all slots' : 'up to a page not found')
  // every chunk cut from digests of stored pages and matched by the root: every page is here
  return {
    still,
    complete,
    settled: replayed.settled,
    output: writer != null && slotMap != null ? { writer, slots: slotMap.nonZero } : undefined
  }
}

/** Writes a batch of pages to their slots, each page's distinct index found by its digest. */
function writeTo (writer: OutputWriter, slotMap: SlotMap, index: PrefixIndex): (items: Array<{ cid: CID, bytes: Uint8Array }>) => Promise<void> {
  return async (items) => writer.write(items, i => slotMap.slotsOf(index.indexOf(items[i].cid.multihash.digest)))
}

/** Pages copied from the store to the memory file per write. */
const COPY_BATCH = 1024

/** Copy the pages `cids` this store holds to the memory file. */
async function copyHeld ({ deps, options }: PullContext, cids: CID[], out: (items: Array<{ cid: CID, bytes: Uint8Array }>) => Promise<void>): Promise<void> {
  let items: Array<{ cid: CID, bytes: Uint8Array }> = []
  for await (const { cid, bytes } of deps.store.getMany(cids, { signal: options.signal })) {
    if (bytes == null) throw new Error(`page ${cid} resolved in the store but could not be read`)
    items.push({ cid, bytes })
    if (items.length >= COPY_BATCH) {
      await out(items)
      items = []
    }
  }
  if (items.length > 0) await out(items)
}

interface Replayed {
  /** Every slot was cut. */
  cut: boolean
  settled?: SlotSet
}

/**
 * Walk the thin manifest slot by slot: cut the manifest's chunks from the digests of the pages
 * found (`digests`, page k's at k * 32) up to the first page not found (boundaries after it are
 * unknown), and collect the slots of the pages `fetched` marks.
 */
async function replay (thin: ThinManifest, index: PrefixIndex, pages: { fetched?: Uint8Array, digests: Uint8Array }, cutter: ChunkCutter): Promise<Replayed> {
  const { fetched } = pages
  const digests = bufferOf(pages.digests)
  const settled = fetched != null ? new SlotSet(index.totalSlots) : undefined
  let cut = true
  let slot = 0
  for (let i = 0; i < thin.count && (cut || settled != null); i++) {
    if (thin.entries[i * THIN_ENTRY_BYTES] !== THIN_PAGE) {
      const run = zeroRunLength(thin, i)
      if (cut) for (let n = run; n > 0; n--) await cutter.zero()
      slot += run
      continue
    }
    const k = index.indexOf(thin.entries, i * THIN_ENTRY_BYTES + 1)
    if (fetched?.[k] === 1) settled!.add(slot)
    slot++
    if (!cut) continue
    if (index.found[k] !== 1) cut = false
    else await cutter.digest(digests, k * 32)
  }
  if (cut) await cutter.flush()
  return { cut, settled }
}
