/**
 * Pages fetched by digest prefix while a manifest is rebuilt from its thin form
 * (manifest-thin.ts): the digests they hash to are what the chunks are cut from.
 */
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import { DEFAULT_WINDOW_PAGES, DEFAULT_WINDOWS_IN_FLIGHT } from './constants.ts'
import type { PullContext } from './context.ts'
import type { DigestLog } from './digest-log.ts'
import { drain } from './fetcher.ts'
import type { Holder } from './index.ts'
import { tierOf } from './planner.ts'
import type { PrefixIndex } from './prefix-index.ts'
import { pageSink } from './sinks.ts'
import type { Sink } from './sinks.ts'
import { PREFIX_BYTES } from '../../protocols/pages/index.ts'

const log = logger('memfabric:migration')

/** What the thin pass knows of the image's distinct pages. */
export interface ThinPages {
  index: PrefixIndex
  /** Set to 1 for each page fetched here. */
  fetched: Uint8Array
  /** Receives the full digest of each page found. */
  digestLog: DigestLog
  /** Writes fetched pages to the memory file as they arrive (with the store batch that holds them). */
  output?: (items: Array<{ cid: CID, bytes: Uint8Array }>) => Promise<void>
}

/**
 * Fetch by prefix what `pages.index` has not found yet, in windows in order of appearance,
 * DEFAULT_WINDOWS_IN_FLIGHT windows at once. For each window the same-site peers are first
 * asked which pages they hold (a held query: one LAN round trip, a bitmap back, no pages);
 * each page is then assigned to the least-loaded site peer that holds it, and what no site
 * peer holds — the residue — goes to the source at once, so the residue streams across the
 * WAN while the site's pages arrive in parallel. What a site peer failed to deliver is asked
 * of the holders in turn (site peers, then the source). Without held answers from every site
 * peer (an older peer, a failure) the window asks the holders in turn, as before: sending the
 * source a page the site may hold would cost WAN bytes. A holder that fails is dropped.
 * Returns how many pages were fetched.
 */
export async function prefetch (ctx: PullContext, pages: ThinPages, site: Holder[], source: Holder): Promise<number> {
  const { index } = pages
  let from = 0
  let count = 0
  const fetchSome = async (holder: Holder, ks: Uint32Array): Promise<void> => {
    if (ks.length > 0 && !ctx.figures.isDropped(holder.peerId.toString())) count += await fetchFrom(ctx, holder, pages, ks)
  }
  const worker = async (): Promise<void> => {
    while (true) {
      const window = index.missing(from, ctx.options.windowPages ?? DEFAULT_WINDOW_PAGES)
      from = window.next
      if (window.indexes.length === 0) return
      const split = await splitBySite(ctx, index, window.indexes, site)
      if (split != null) {
        await Promise.all([...split.site.map(async ([holder, ks]) => { await fetchSome(holder, ks) }), fetchSome(source, split.residue)])
      }
      for (const holder of [...site, source]) {
        const left = window.indexes.filter(k => index.found[k] === 0)
        if (left.length === 0) break
        await fetchSome(holder, left)
      }
    }
  }
  // never return while a window still writes behind our back
  const results = await Promise.allSettled(Array.from({ length: DEFAULT_WINDOWS_IN_FLIGHT }, worker))
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed != null) throw failed.reason
  return count
}

/** A window's pages split among the site peers that hold them, and the residue only the source has. */
interface SiteSplit {
  site: Array<[Holder, Uint32Array]>
  residue: Uint32Array
}

/**
 * Ask every same-site peer which of pages `ks` it holds, in parallel; assign each page to the
 * holder with the fewest pages so far. Undefined when some site peer gave no answer.
 */
async function splitBySite (ctx: PullContext, index: PrefixIndex, ks: Uint32Array, site: Holder[]): Promise<SiteSplit | undefined> {
  const { deps, options, figures } = ctx
  const heldByPrefix = deps.heldByPrefix
  const peers = site.filter(p => !figures.isDropped(p.peerId.toString()))
  if (heldByPrefix == null) return peers.length === 0 ? { site: [], residue: ks } : undefined
  const prefixes = index.pack(ks)
  const span = figures.timeline.begin('plan')
  const answers = await Promise.all(peers.map(async peer => {
    try {
      span.roundTrip()
      span.bytes(0, prefixes.byteLength)
      const { held, wireBytes } = await heldByPrefix(peer.peerId, prefixes, { signal: options.signal })
      figures.wire('site', 'pages', wireBytes, false)
      return held
    } catch (err: any) {
      options.signal?.throwIfAborted()
      log('held query to %p failed - %e', peer.peerId, err)
      return undefined
    }
  }))
  span.end()
  if (answers.some(a => a == null)) return undefined
  const lists: number[][] = peers.map(() => [])
  const residue: number[] = []
  for (let j = 0; j < ks.length; j++) {
    let best = -1
    for (let p = 0; p < peers.length; p++) {
      if ((answers[p]![j >> 3] & (1 << (j & 7))) === 0) continue
      if (best < 0 || lists[p].length < lists[best].length) best = p
    }
    if (best < 0) residue.push(ks[j])
    else lists[best].push(ks[j])
  }
  return { site: peers.map((peer, p) => [peer, Uint32Array.from(lists[p])]), residue: Uint32Array.from(residue) }
}

/** Fetch pages `ks` of the index by prefix from `holder`; a holder that fails is dropped. Returns how many arrived. */
async function fetchFrom (ctx: PullContext, holder: Holder, pages: ThinPages, ks: Uint32Array): Promise<number> {
  const { deps, options, figures } = ctx
  const { index, fetched, digestLog } = pages
  const tier = tierOf(holder, ctx.at)
  const crossSite = holder.site !== deps.site
  const sink = pageSink(ctx)
  // reported once stored: a caller that stops the pull on progress keeps what it saw
  const { output } = pages
  const store: Sink = async (items, from) => {
    // the batch's buffer is freed once both are done
    await Promise.all([sink(items, from), output?.(items)])
    figures.progress('pages')
  }
  let count = 0
  figures.timeline.add(`fetch:${tier}`, { bytesOut: ks.length * PREFIX_BYTES })
  await drain(ctx, holder, store, async (take) => {
    const result = await deps.fetchByPrefix(holder.peerId, index.pack(ks), {
      compress: crossSite,
      signal: options.signal,
      onPage: (cid: CID, bytes) => {
        const i = index.indexOf(cid.multihash.digest)
        if (i < 0 || index.found[i] === 1) return
        index.setFound(i)
        fetched[i] = 1
        count++
        digestLog.append(i, cid.multihash.digest)
        figures.ahead(tier, bytes.byteLength, index.slots[i])
        take(cid, bytes)
      }
    })
    figures.wire(tier, 'pages', result.wireBytes, crossSite)
  })
  return count
}
