/**
 * The page stage of a pull: walk the image's slots in windows of distinct pages, and fetch what
 * the own store lacks from the nearest holders (fetcher.ts); DEFAULT_WINDOWS_IN_FLIGHT windows
 * at once, so planning one overlaps fetching another. When the thin manifest's pass stored
 * every page already, the slots are only counted (countSlots).
 */
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import { keyOf } from './cid-key.ts'
import { DEFAULT_WINDOW_PAGES, DEFAULT_WINDOWS_IN_FLIGHT } from './constants.ts'
import type { PullContext } from './context.ts'
import { thirdSiteKnown } from './site.ts'
import { fetchAll } from './fetcher.ts'
import { pageSink } from './sinks.ts'
import type { SlotSet } from './slot-set.ts'

const log = logger('memfabric:migration')

/** Distinct pages of a page walk's first window; windows double from there. */
const FIRST_WINDOW_PAGES = 512

export interface PageWalkInit {
  /** An older image of the VM: the page in the same slot is the reference of a delta. */
  basis?: CID
  /** Slots whose figures the manifest stage recorded (pages it fetched): only marked done here. */
  settled?: SlotSet
}

/** A distinct page of a window: how many slots it fills, how many of those are settled, and the basis page of its first slot. */
interface WindowEntry {
  cid: CID
  length: number
  slots: number
  settled: number
  ref?: CID
}

/** Count the image's zero slots and, as local, every other slot not settled: the thin manifest's pass stored every page. */
export async function countSlots (ctx: PullContext, settled?: SlotSet): Promise<void> {
  const { deps, options, figures } = ctx
  let slot = 0
  for await (const chunk of deps.store.slotArrays(options.root, { signal: options.signal })) {
    let zero = 0
    let held = 0
    let bytes = 0
    for (let i = 0; i < chunk.count; i++, slot++) {
      if (chunk.zero[i] === 1) {
        zero++
      } else if (settled?.has(slot) !== true) {
        held++
        bytes += chunk.lengths[i]
      }
    }
    figures.zero(zero)
    figures.held(held, bytes)
    figures.reached(chunk.count - zero - held)
  }
  figures.progress('pages')
}

export class PageWalk {
  private readonly ctx: PullContext
  private readonly basis?: CID
  private readonly settled?: SlotSet
  /** Pages some window is fetching now: a later window waits for them instead of fetching them twice. */
  private readonly fetching = new Map<string, Promise<void>>()

  constructor (ctx: PullContext, init: PageWalkInit = {}) {
    this.ctx = ctx
    this.basis = init.basis
    this.settled = init.settled
  }

  /** Walk every slot; resolves once every window is fetched, throws the first failure. */
  async run (): Promise<void> {
    const { deps, options, figures } = this.ctx
    const { store } = deps
    const { root, signal } = options
    const windowPages = options.windowPages ?? DEFAULT_WINDOW_PAGES
    // the first window is small, so pages start moving after one short presence round, and
    // each next one doubles up to windowPages (planning 8192 pages took ~0.7 s on a loaded
    // host before the first page was asked for)
    let size = Math.min(FIRST_WINDOW_PAGES, windowPages)
    const inFlight = new Set<Promise<void>>()
    let window = new Map<string, WindowEntry>()
    // walked in step with the image: same slot, older content
    let basisSlots = this.basis != null ? store.pageSlots(this.basis, { signal }) : undefined
    // the basis only makes pages smaller: if its blocks go away (gc of the unpinned copy), go on without
    const oldSlot = async (): Promise<CID | undefined> => {
      if (basisSlots == null) return undefined
      try {
        return (await basisSlots.next()).value?.cid ?? undefined
      } catch (err: any) {
        signal?.throwIfAborted()
        log.error('basis %c unreadable, no more deltas - %e', this.basis, err)
        basisSlots = undefined
        return undefined
      }
    }

    const flush = async (): Promise<void> => {
      const entries = [...window.values()]
      window = new Map()
      size = Math.min(size * 2, windowPages)
      const task = this.pullWindow(entries)
      inFlight.add(task)
      task.finally(() => inFlight.delete(task)).catch(() => {})
      if (inFlight.size >= DEFAULT_WINDOWS_IN_FLIGHT) {
        await Promise.race(inFlight)
      }
    }

    try {
      for await (const slot of store.pageSlots(root, { signal })) {
        const old = await oldSlot()
        if (slot.cid == null) {
          figures.zero(1)
          continue
        }
        const settled = this.settled?.has(slot.index) === true ? 1 : 0
        const key = keyOf(slot.cid)
        const entry = window.get(key)
        if (entry != null) {
          entry.slots++
          entry.settled += settled
        } else {
          const ref = old != null && !old.equals(slot.cid) ? old : undefined
          window.set(key, { cid: slot.cid, length: slot.length, slots: 1, settled, ref })
          if (window.size >= size) await flush()
        }
      }
      if (window.size > 0) await flush()
    } finally {
      await basisSlots?.return(undefined)
      // surface the first failure, but never leave a window running behind our back
      const results = await Promise.allSettled(inFlight)
      const failed = results.find(r => r.status === 'rejected')
      if (failed != null) throw (failed as PromiseRejectedResult).reason
    }
  }

  private async pullWindow (entries: WindowEntry[]): Promise<void> {
    const { deps, options, figures } = this.ctx
    const held = await deps.store.has(entries.map(e => e.cid), { signal: options.signal })
    const missing: CID[] = []
    const refs = new Map<string, CID>()
    const fetching: string[] = []
    const elsewhere = new Set<Promise<void>>()
    entries.forEach((entry, i) => {
      const key = keyOf(entry.cid)
      const other = held[i] ? undefined : this.fetching.get(key)
      if (held[i] || other != null) {
        // held, or on its way for an earlier window: it comes from the local store
        if (other != null) elsewhere.add(other)
        figures.held(entry.slots - entry.settled, (entry.slots - entry.settled) * entry.length)
        figures.reached(entry.settled)
      } else {
        missing.push(entry.cid)
        fetching.push(key)
        if (entry.ref != null) refs.set(key, entry.ref)
        // repeats of a fetched page inside the image come from the local store (a settled
        // page is stored: missing, it was lost since, and is fetched and counted again)
        figures.held(entry.slots - 1, (entry.slots - 1) * entry.length)
      }
    })
    figures.progress('pages')
    if (missing.length > 0) {
      const task = fetchAll(this.ctx, missing, { useDht: thirdSiteKnown(this.ctx), sink: pageSink(this.ctx), kind: 'pages', refs })
      for (const key of fetching) this.fetching.set(key, task)
      try {
        await task
      } finally {
        for (const key of fetching) this.fetching.delete(key)
      }
    }
    await Promise.all(elsewhere)
  }
}
