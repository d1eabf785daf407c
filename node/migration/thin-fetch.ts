/**
 * Pages fetched by digest prefix while a manifest is rebuilt from its thin form
 * (manifest-thin.ts): the digests they hash to are what the chunks are cut from.
 */
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

/** What the thin pass knows of the image's distinct pages. */
export interface ThinPages {
  index: PrefixIndex
  /** Set to 1 for each page fetched here. */
  fetched: Uint8Array
  /** Receives the full digest of each page found. */
  digestLog: DigestLog
}

/**
 * Fetch by prefix what `pages.index` has not found yet, in windows in order of appearance: each
 * window asks `holders` in turn (same-site peers, then the source) for what the ones before
 * did not send; DEFAULT_WINDOWS_IN_FLIGHT windows at once, so the tiers overlap. A holder
 * that fails is dropped. Returns how many pages were fetched.
 */
export async function prefetch (ctx: PullContext, pages: ThinPages, holders: Holder[]): Promise<number> {
  const { index } = pages
  let from = 0
  let count = 0
  const worker = async (): Promise<void> => {
    while (true) {
      const window = index.missing(from, ctx.options.windowPages ?? DEFAULT_WINDOW_PAGES)
      from = window.next
      if (window.indexes.length === 0) return
      for (const holder of holders) {
        const left = window.indexes.filter(k => index.found[k] === 0)
        if (left.length === 0) break
        if (!ctx.figures.isDropped(holder.peerId.toString())) count += await fetchFrom(ctx, holder, pages, left)
      }
    }
  }
  // never return while a window still writes behind our back
  const results = await Promise.allSettled(Array.from({ length: DEFAULT_WINDOWS_IN_FLIGHT }, worker))
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed != null) throw failed.reason
  return count
}

/** Fetch pages `ks` of the index by prefix from `holder`; a holder that fails is dropped. Returns how many arrived. */
async function fetchFrom (ctx: PullContext, holder: Holder, pages: ThinPages, ks: Uint32Array): Promise<number> {
  const { deps, options, figures } = ctx
  const { index, fetched, digestLog } = pages
  const tier = tierOf(holder, ctx.at)
  const crossSite = holder.site !== deps.site
  const sink = pageSink(ctx)
  // reported once stored: a caller that stops the pull on progress keeps what it saw
  const store: Sink = async (items, from) => { await sink(items, from); figures.progress('pages') }
  let count = 0
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
