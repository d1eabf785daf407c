/**
 * Fetching from holders: a plan (planner.ts) is carried out holder by holder in slices, a few
 * fetch calls in flight each, verified items written to the store in batches while they
 * arrive; a holder that fails is dropped and what it did not send is planned again.
 */
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import { PAGE_SIZE } from '../../store/constants.ts'
import { release } from '../../store/page-table.ts'
import { keyOf } from './cid-key.ts'
import { DEFAULT_FETCHES_PER_HOLDER, DEFAULT_SLICE_PAGES, DEFAULT_STORE_BATCH } from './constants.ts'
import type { PullContext } from './context.ts'
import { discover } from './discover.ts'
import { PagesUnavailableError } from './errors.ts'
import type { FetchKind } from './figures.ts'
import type { Holder } from './index.ts'
import { plan, tierOf, toCandidate } from './planner.ts'
import { references } from './references.ts'
import type { Sink } from './sinks.ts'

const log = logger('memfabric:migration')

export interface FetchPlan {
  useDht: boolean
  sink: Sink
  kind: FetchKind
  /** Per page key, the page of the basis image in the same slot: the source may send the page compressed against it. */
  refs?: Map<string, CID>
}

/** Hands a received item to the batch being filled. */
export type Collect = (cid: CID, bytes: Uint8Array) => void

/** Find holders for `cids`, fetch every one, re-plan around failures; throws if some stay unavailable. */
export async function fetchAll (ctx: PullContext, cids: CID[], opts: FetchPlan): Promise<void> {
  const { deps, options, figures, at } = ctx
  const candidates = await discover(ctx, cids, opts)
  const source = toCandidate(deps.describe(options.source), at)
  const tried = new Map<string, string[]>()
  let pending = cids

  while (pending.length > 0) {
    options.signal?.throwIfAborted()
    const { assignments, unavailable } = plan(pending, candidates, source, tried, { has: id => figures.isDropped(id) })
    if (unavailable.length > 0) {
      const why = figures.whyDropped(options.source.toString())
      throw new PagesUnavailableError(
        `${unavailable.length} ${opts.kind === 'pages' ? 'pages' : 'manifest blocks'} of ${options.root} are held by no reachable peer ` +
        `(the source ${why != null ? `failed: ${why}` : 'does not have them'}); ` +
        're-run the migration to fetch only what is missing', unavailable.length)
    }
    const received = new Set<string>()
    await Promise.all([...assignments.values()].map(async ({ holder, cids: assigned }) => {
      await fetchFrom(ctx, holder.holder, assigned, opts, received)
    }))
    pending = pending.filter(cid => !received.has(keyOf(cid)))
  }
}

/** Fetch from one holder in slices; a holder that fails is dropped for the rest of the migration. */
async function fetchFrom (ctx: PullContext, holder: Holder, cids: CID[], opts: FetchPlan, received: Set<string>): Promise<void> {
  const { deps, options, figures } = ctx
  const id = holder.peerId.toString()
  const tier = tierOf(holder, ctx.at)
  const crossSite = holder.site !== deps.site
  const slice = options.slicePages ?? DEFAULT_SLICE_PAGES
  const slices: CID[][] = []
  for (let i = 0; i < cids.length; i += slice) slices.push(cids.slice(i, i + slice))

  const worker = async (): Promise<void> => {
    while (slices.length > 0 && !figures.isDropped(id)) {
      const next = slices.shift()!
      // request payload: a digest per item asked
      figures.timeline.add(opts.kind === 'manifest' ? 'manifest:fetch' : `fetch:${tier}`, { bytesOut: next.length * 32 })
      await drain(ctx, holder, opts.sink, async (take) => {
        const refs = crossSite && tier === 'source' && opts.refs != null && opts.refs.size > 0 ? await references(ctx, next, opts.refs) : undefined
        const result = await deps.fetch(holder.peerId, next, {
          compress: crossSite,
          refs,
          signal: options.signal,
          onBlock: (cid, bytes) => {
            take(cid, bytes)
            received.add(keyOf(cid))
            if (opts.kind === 'manifest') figures.block()
            else figures.page(tier, bytes.byteLength)
          }
        })
        figures.wire(tier, opts.kind, result.wireBytes, crossSite)
        figures.deltaPages(result.deltaPages ?? 0)
      }, opts.kind)
      figures.progress('pages')
    }
  }
  await Promise.all(Array.from({ length: DEFAULT_FETCHES_PER_HOLDER }, worker))
}

/**
 * Run `fetch` against `holder`, writing what it hands to `take` through `sink` in store
 * batches while it runs; a holder whose fetch fails is dropped (what it sent is kept).
 */
export async function drain (ctx: PullContext, holder: Holder, sink: Sink, fetch: (take: Collect) => Promise<void>, kind: FetchKind = 'pages'): Promise<void> {
  const tier = tierOf(holder, ctx.at)
  // pages are copied into a buffer of the batch, freed once the batch is stored: the frames
  // they arrived in then die young, where views kept them (1 MiB each) until V8's next full
  // collection, which external memory triggers only 64 MB later
  let buffer: Buffer | undefined
  let batch: Array<{ cid: CID, bytes: Uint8Array }> = []
  let writing = Promise.resolve()
  const write = (): void => {
    const items = batch
    const held = buffer
    batch = []
    buffer = undefined
    if (items.length > 0) writing = writing.then(async () => sink(items, tier)).finally(() => { if (held != null) release(held) })
  }
  const span = ctx.figures.timeline.begin(kind === 'manifest' ? 'manifest:fetch' : `fetch:${tier}`)
  span.roundTrip()
  try {
    await fetch((cid, bytes) => {
      if (bytes.byteLength <= PAGE_SIZE) {
        buffer ??= Buffer.allocUnsafeSlow(DEFAULT_STORE_BATCH * PAGE_SIZE)
        const at = batch.length * PAGE_SIZE
        buffer.set(bytes, at)
        bytes = buffer.subarray(at, at + bytes.byteLength)
      }
      // a manifest block (larger) is kept as it came
      batch.push({ cid, bytes })
      if (batch.length >= DEFAULT_STORE_BATCH) write()
    })
  } catch (err: any) {
    if (ctx.options.signal?.aborted === true) throw err
    const id = holder.peerId.toString()
    log('dropping holder %s (%s) - %e', id, tier, err)
    ctx.figures.drop(id, err.message ?? String(err))
  } finally {
    span.end()
    write()
    await writing
  }
}
