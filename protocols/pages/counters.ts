/**
 * The page exchange's counters, in total and per remote peer, bumped together.
 */
import type { PageCounters } from './index.ts'

/** Add `n` to counter `field` of `peer` (and to the total). */
export type Count = (peer: string, field: keyof PageCounters, n: number) => void

export function newCounters (): PageCounters {
  return { pagesServed: 0, bytesServed: 0, wireBytesServed: 0, missingServed: 0, requestsServed: 0, pagesFetched: 0, bytesFetched: 0, wireBytesFetched: 0, missingFetched: 0, misbehaved: 0, timeouts: 0 }
}

export class PageCounterSet {
  /** Totals over all peers. */
  readonly total: PageCounters = newCounters()
  /** Counters per remote peer id (string). */
  readonly perPeer = new Map<string, PageCounters>()

  readonly count: Count = (peer, field, n) => {
    this.total[field] += n
    this.of(peer)[field] += n
  }

  private of (peer: string): PageCounters {
    let c = this.perPeer.get(peer)
    if (c == null) {
      c = newCounters()
      this.perPeer.set(peer, c)
    }
    return c
  }
}
