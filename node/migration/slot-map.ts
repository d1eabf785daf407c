/**
 * Where each distinct page of a thin manifest sits in the image: the slots of page k (its
 * index in the PrefixIndex) are `slots.subarray(start[k], start[k + 1])`. 4 bytes a non-zero
 * slot (4 MB for a 4 GiB image), built in two passes over the thin entries.
 */
import type { ThinManifest } from '../../protocols/pages/index.ts'
import { THIN_ENTRY_BYTES, THIN_PAGE, zeroRunLength } from '../../protocols/pages/index.ts'
import type { PrefixIndex } from './prefix-index.ts'

export class SlotMap {
  private readonly start: Uint32Array
  private readonly list: Uint32Array

  constructor (thin: ThinManifest, index: PrefixIndex) {
    const start = new Uint32Array(index.size + 1)
    for (let k = 0; k < index.size; k++) start[k + 1] = start[k] + index.slots[k]
    const list = new Uint32Array(start[index.size])
    const fill = start.slice(0, index.size)
    let slot = 0
    for (let i = 0; i < thin.count; i++) {
      if (thin.entries[i * THIN_ENTRY_BYTES] !== THIN_PAGE) {
        slot += zeroRunLength(thin, i)
        continue
      }
      const k = index.indexOf(thin.entries, i * THIN_ENTRY_BYTES + 1)
      list[fill[k]++] = slot++
    }
    this.start = start
    this.list = list
  }

  /** Non-zero slots of the image. */
  get nonZero (): number {
    return this.list.length
  }

  /** Slots of distinct page `k`. */
  slotsOf (k: number): Uint32Array {
    return this.list.subarray(this.start[k], this.start[k + 1])
  }
}
