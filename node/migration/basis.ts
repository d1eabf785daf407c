/**
 * The basis of an image being served: an older image of the same VM this node holds (same
 * size, most slots in common). Its manifest patch — the slots where the image differs — lets a
 * destination that holds the older image's manifest rebuild the new one instead of fetching
 * it, and tells it which older page sits in each slot: a partly rewritten page then crosses
 * the WAN compressed against that page (see `FetchOptions.refs`).
 */
import { logger } from '@libp2p/logger'
import type { AbortOptions } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import type { ImageInfo, Store } from '../../store/index.ts'
import type { ManifestPatch } from '../../protocols/pages/index.ts'
import { BASIS_CACHE_TTL, BASIS_CANDIDATES, BASIS_MIN_SHARED } from './constants.ts'

const log = logger('memfabric:migration:basis')

/** The slots where an image differs from its basis (sorted by slot). */
interface Basis {
  root: CID
  /** Slot indexes, ascending. */
  slots: Uint32Array
  /** Per slot: 0 when the image's page is zero there, else 1. */
  kinds: Uint8Array
  /** sha2-256 digest of the image's page of each slot, 32 bytes each. */
  digests: Uint8Array
}


export class BasisIndex {
  private readonly store: Pick<Store, 'list' | 'pageSlots' | 'hasBlock'>
  private readonly cache = new Map<string, { basis: Promise<Basis | undefined>, at: number }>()

  constructor (store: Pick<Store, 'list' | 'pageSlots' | 'hasBlock'>) {
    this.store = store
  }

  /** How `root` differs from its basis, slot by slot; undefined without a basis. */
  async patch (root: CID, options: AbortOptions = {}): Promise<ManifestPatch | undefined> {
    const basis = await this.basisOf(root, options)
    if (basis == null) {
      return undefined
    }
    return { basis: basis.root, slots: basis.slots, kinds: basis.kinds, digests: basis.digests }
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
    let kinds = new Uint8Array(size)
    let digests = new Uint8Array(size * 32)
    let n = 0
    try {
      while (true) {
        const [a, b] = await Promise.all([mine.next(), theirs.next()])
        if (a.done === true || b.done === true) break
        const x = a.value.cid
        const y = b.value.cid
        if (x == null && y == null) continue
        if (x != null && y != null && (x.equals(y) as boolean)) {
          shared++
          continue
        }
        if (!collect) continue
        if (n === size) {
          size *= 2
          slots = grow(slots, size)
          kinds = grow(kinds, size)
          digests = grow(digests, size * 32)
        }
        slots[n] = a.value.index
        kinds[n] = x == null ? 0 : 1
        if (x != null) digests.set(x.multihash.digest, n * 32)
        n++
      }
    } finally {
      await mine.return(undefined)
      await theirs.return(undefined)
    }
    return { shared, slots: slots.slice(0, n), kinds: kinds.slice(0, n), digests: digests.slice(0, n * 32) }
  }
}

function grow<T extends Uint32Array | Uint8Array> (array: T, length: number): T {
  const out = new (array.constructor as new (n: number) => T)(length)
  out.set(array)
  return out
}
