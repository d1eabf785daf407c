/**
 * The distinct pages of a thin manifest, by digest prefix: sorted prefixes, the slots each
 * fills, whether it was found, and the order of first appearance in the image (pages
 * are fetched in that order: neighbours in memory compress together). Typed arrays, 17 bytes
 * a distinct page (an image of 10^6 pages must not cost an object per page); full digests are
 * not kept here (32 bytes a page for the whole pull): the puller spills them to a scratch
 * file (digest-log.ts).
 */
import { PREFIX_BYTES, THIN_ENTRY_BYTES, THIN_PAGE, zeroRunLength } from '../../protocols/pages/index.ts'
import type { ThinManifest } from '../../protocols/pages/index.ts'
import { release } from '../../store/page-table.ts'

export class PrefixIndex {
  /** Distinct prefixes, ascending (big-endian, so in byte order). */
  readonly keys: BigUint64Array
  /** Slots of the image each distinct page fills. */
  readonly slots: Uint32Array
  /** 1 once the page is held. */
  readonly found: Uint8Array
  /** Indexes of the distinct pages in the order they first appear in the image. */
  readonly appearance: Uint32Array
  /** Slots of the image, zero pages included. */
  readonly totalSlots: number

  constructor (thin: ThinManifest) {
    const view = new DataView(thin.entries.buffer, thin.entries.byteOffset, thin.entries.byteLength)
    const all = new BigUint64Array(thin.count)
    let pages = 0
    let total = 0
    for (let i = 0; i < thin.count; i++) {
      if (thin.entries[i * THIN_ENTRY_BYTES] === THIN_PAGE) {
        all[pages++] = view.getBigUint64(i * THIN_ENTRY_BYTES + 1)
        total++
      } else {
        total += zeroRunLength(thin, i)
      }
    }
    this.totalSlots = total
    const sorted = all.subarray(0, pages).sort()
    let distinct = 0
    const slots = new Uint32Array(pages)
    for (let i = 0; i < pages; i++) {
      if (distinct === 0 || sorted[distinct - 1] !== sorted[i]) sorted[distinct++] = sorted[i]
      slots[distinct - 1]++
    }
    this.keys = sorted.slice(0, distinct)
    this.slots = slots.slice(0, distinct)
    release(all)
    release(slots)
    this.found = new Uint8Array(distinct)
    this.appearance = new Uint32Array(distinct)
    const seen = new Uint8Array(distinct)
    let next = 0
    for (let i = 0; i < thin.count; i++) {
      if (thin.entries[i * THIN_ENTRY_BYTES] !== THIN_PAGE) continue
      const k = this.indexOf(thin.entries, i * THIN_ENTRY_BYTES + 1)
      if (seen[k] === 0) {
        seen[k] = 1
        this.appearance[next++] = k
      }
    }
    release(seen)
  }

  /** Free the index's memory now (~17 bytes a page) rather than at the next full collection. */
  dispose (): void {
    for (const array of [this.keys, this.slots, this.found, this.appearance]) release(array)
  }

  /** Record that page `k` is held. */
  setFound (k: number): void {
    this.found[k] = 1
  }

  get size (): number {
    return this.keys.length
  }

  /** Index of the distinct page whose prefix starts `bytes` at `at`, or -1. */
  indexOf (bytes: Uint8Array, at = 0): number {
    const key = new DataView(bytes.buffer, bytes.byteOffset + at, PREFIX_BYTES).getBigUint64(0)
    let lo = 0
    let hi = this.keys.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const k = this.keys[mid]
      if (k === key) return mid
      if (k < key) lo = mid + 1
      else hi = mid - 1
    }
    return -1
  }

  /**
   * Pages not found yet, in order of appearance: at most `limit` of them from position `from`
   * of that order on; `next` is where to go on.
   */
  missing (from = 0, limit = Infinity): { indexes: Uint32Array, next: number } {
    const indexes: number[] = []
    let i = from
    for (; i < this.appearance.length && indexes.length < limit; i++) {
      const k = this.appearance[i]
      if (this.found[k] === 0) indexes.push(k)
    }
    return { indexes: Uint32Array.from(indexes), next: i }
  }

  /** The prefixes of pages `ks`, packed. */
  pack (ks: ArrayLike<number>): Uint8Array {
    const out = new Uint8Array(ks.length * PREFIX_BYTES)
    const view = new DataView(out.buffer)
    for (let j = 0; j < ks.length; j++) view.setBigUint64(j * PREFIX_BYTES, this.keys[ks[j]])
    return out
  }

  /** The prefixes of pages `from` … `to` - 1, packed. */
  prefixes (from: number, to: number): Uint8Array {
    return this.pack(Uint32Array.from({ length: to - from }, (_, j) => from + j))
  }
}
