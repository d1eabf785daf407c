/**
 * Reference pages for delta transfer, on the serving side: for a slot of an image being
 * pulled, the page at the same slot of an older image of the same VM that this node holds.
 * A partly rewritten page compresses to a few hundred bytes against it, and the destination
 * often holds that older page already (a VM returning to a site that ran it before). The same
 * comparison gives the manifest patch: a destination that holds the older image's manifest
 * rebuilds the new one from the slots that differ instead of fetching it.
 */
import { logger } from '@libp2p/logger'
import type { AbortOptions } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { digestToCid } from '../../store/page.ts'
import type { ImageInfo, Store } from '../../store/index.ts'
import type { ManifestPatch } from '../../protocols/pages/index.ts'
import { BASIS_CACHE_TTL, BASIS_CANDIDATES, BASIS_MIN_SHARED } from './constants.ts'

const log = logger('memfabric:migration:similar')

/** The slots where an image differs from its basis (sorted by slot). */
interface Basis {
  root: CID
  /** Slot indexes, ascending. */
  slots: Uint32Array
  /** Per slot: bit 0 set when the image's page is zero, bit 1 when the basis page is. */
  zero: Uint8Array
  /** sha2-256 digest of the image's page of each slot, 32 bytes each. */
  digests: Uint8Array
  /** sha2-256 digest of the basis page of each slot, 32 bytes each. */
  basisDigests: Uint8Array
}

const IMAGE_ZERO = 1
const BASIS_ZERO = 2

export class SimilarPages {
  private readonly store: Pick<Store, 'list' | 'pageSlots' | 'hasBlock'>
  private readonly cache = new Map<string, { basis: Promise<Basis | undefined>, at: number }>()

  constructor (store: Pick<Store, 'list' | 'pageSlots' | 'hasBlock'>) {
    this.store = store
  }

  /** For each slot index of `root` (ascending), the page to compress it against, or null. */
  async refs (root: CID, indexes: number[], options: AbortOptions = {}): Promise<Array<CID | null>> {
    const basis = await this.basisOf(root, options)
    if (basis == null) {
      return indexes.map(() => null)
    }
    return indexes.map(index => {
      const at = search(basis.slots, index)
      return at < 0 || basis.zero[at] !== 0 ? null : digestToCid(basis.basisDigests.slice(at * 32, at * 32 + 32))
    })
  }

  /** How `root` differs from its basis, slot by slot; undefined without a basis. */
  async patch (root: CID, options: AbortOptions = {}): Promise<ManifestPatch | undefined> {
    const basis = await this.basisOf(root, options)
    if (basis == null) {
      return undefined
    }
    const kinds = new Uint8Array(basis.slots.length)
    for (let i = 0; i < kinds.length; i++) kinds[i] = (basis.zero[i] & IMAGE_ZERO) !== 0 ? 0 : 1
    return { basis: basis.root, slots: basis.slots, kinds, digests: basis.digests }
  }

  private async basisOf (root: CID, options: AbortOptions): Promise<Basis | undefined> {
    const key = root.toString()
    const now = Date.now()
    for (const [k, entry] of this.cache) {
      if (now - entry.at > BASIS_CACHE_TTL) this.cache.delete(k)
    }
    let entry = this.cache.get(key)
    if (entry == null) {
      entry = { basis: this.findBasis(root, options), at: now }
      entry.basis.catch(() => { this.cache.delete(key) })
      this.cache.set(key, entry)
    }
    return entry.basis
  }

  /**
   * The complete image of the same page count that shares the most slots with `root`, if it
   * shares at least BASIS_MIN_SHARED of root's non-zero slots; the newest few are compared.
   */
  private async findBasis (root: CID, options: AbortOptions): Promise<Basis | undefined> {
    if (!await this.store.hasBlock(root, options)) {
      return undefined
    }
    const images = await this.store.list(options)
    const image = images.find(i => i.root.equals(root))
    if (image == null) {
      return undefined
    }
    const candidates = images
      .filter(i => i.complete && i.pages === image.pages && !i.root.equals(root))
      .sort((a, b) => b.createdAt - a.createdAt)
      .slice(0, BASIS_CANDIDATES)
    let best: { image: ImageInfo, shared: number } | undefined
    for (const candidate of candidates) {
      const { shared } = await this.compare(root, candidate.root, false, options)
      if (best == null || shared > best.shared) best = { image: candidate, shared }
    }
    const nonZero = image.pages - image.zeroPages
    if (best == null || nonZero === 0 || best.shared / nonZero < BASIS_MIN_SHARED) {
      log('no basis for %c among %d candidates', root, candidates.length)
      return undefined
    }
    const diff = await this.compare(root, best.image.root, true, options)
    log('basis of %c is %c: %d slots shared, %d differ', root, best.image.root, best.shared, diff.slots.length)
    return { root: best.image.root, ...diff }
  }

  /** Walk both images slot by slot; count equal slots and, with `collect`, list the differing ones. */
  private async compare (root: CID, other: CID, collect: boolean, options: AbortOptions): Promise<Omit<Basis, 'root'> & { shared: number }> {
    const mine = this.store.pageSlots(root, options)
    const theirs = this.store.pageSlots(other, options)
    let shared = 0
    let size = collect ? 1024 : 0
    let slots = new Uint32Array(size)
    let zero = new Uint8Array(size)
    let digests = new Uint8Array(size * 32)
    let basisDigests = new Uint8Array(size * 32)
    let n = 0
    try {
      while (true) {
        const [a, b] = await Promise.all([mine.next(), theirs.next()])
        if (a.done === true || b.done === true) break
        const x = a.value.cid
        const y = b.value.cid
        if (x == null && y == null) continue
        if (x != null && y != null && x.multihash.bytes.every((v, i) => v === y.multihash.bytes[i])) {
          shared++
          continue
        }
        if (!collect) continue
        if (n === size) {
          size *= 2
          slots = grow(slots, size)
          zero = grow(zero, size)
          digests = grow(digests, size * 32)
          basisDigests = grow(basisDigests, size * 32)
        }
        slots[n] = a.value.index
        zero[n] = (x == null ? IMAGE_ZERO : 0) | (y == null ? BASIS_ZERO : 0)
        if (x != null) digests.set(x.multihash.digest, n * 32)
        if (y != null) basisDigests.set(y.multihash.digest, n * 32)
        n++
      }
    } finally {
      await mine.return(undefined)
      await theirs.return(undefined)
    }
    return { shared, slots: slots.slice(0, n), zero: zero.slice(0, n), digests: digests.slice(0, n * 32), basisDigests: basisDigests.slice(0, n * 32) }
  }
}

function grow<T extends Uint32Array | Uint8Array> (array: T, length: number): T {
  const out = new (array.constructor as new (n: number) => T)(length)
  out.set(array)
  return out
}

/** Position of `value` in the ascending `array`, or -1. */
function search (array: Uint32Array, value: number): number {
  let lo = 0
  let hi = array.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    if (array[mid] === value) return mid
    if (array[mid] < value) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}
