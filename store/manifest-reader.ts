/**
 * Walking an image's manifest: its root, then its chunk blocks in order, each entry placed in
 * the image by the extents (a slot's offset and length), as slot objects, as typed arrays
 * (for bulk readers) or as counts.
 */
import type { CID } from 'multiformats/cid'
import type { AbortOptions } from '@libp2p/interface'
import { BlockNotFoundError, ImageFormatError, PageNotFoundError } from './errors.ts'
import { decodeChunkDigests, decodeRoot, extentPages } from './manifest.ts'
import type { DigestEntry } from './manifest.ts'
import { digestToCid } from './page.ts'
import { release } from './page-table.ts'
import type { PageIndex } from './page-index.ts'
import type { BlockReader } from './internal.ts'
import type { Manifest, PageSlot, SlotArrays } from './index.ts'

/** An image slot inside the store: a page digest, or null for a zero page. */
export interface Slot {
  index: number
  offset: number
  length: number
  digest: Uint8Array | null
}

/** Walks an image's extents slot by slot: where each next slot lies and how long it is. */
class ExtentWalk {
  /** Slots walked so far (the index of the next one). */
  index = 0
  /** Length of the slot {@link next} returned last. */
  length = 0
  private ext = 0
  private inExt = 0
  private readonly root: CID
  private readonly m: Manifest

  constructor (root: CID, m: Manifest) {
    this.root = root
    this.m = m
  }

  /** Image offset of the next slot (its length in {@link length}). */
  next (): number {
    const { extents, pageSize: ps } = this.m
    while (this.ext < extents.length && this.inExt >= extentPages(extents[this.ext], ps)) {
      this.ext++
      this.inExt = 0
    }
    if (this.ext >= extents.length) throw new ImageFormatError(`manifest ${this.root.toString()} lists more pages than its extents hold`)
    const e = extents[this.ext]
    const offset = e.offset + this.inExt * ps
    this.inExt++
    this.index++
    this.length = Math.min(ps, e.offset + e.length - offset)
    return offset
  }
}

export interface ManifestReaderComponents {
  blocks: Pick<BlockReader, 'getBlock'>
  pages: Pick<PageIndex, 'lookup'>
}

export class ManifestReader {
  private readonly components: ManifestReaderComponents

  constructor (components: ManifestReaderComponents) {
    this.components = components
  }

  /** The decoded manifest root. Throws BlockNotFoundError / ImageFormatError. */
  async read (root: CID, options: AbortOptions = {}): Promise<Manifest> {
    const bytes = await this.components.blocks.getBlock(root, options)
    if (bytes == null) throw new BlockNotFoundError(`manifest ${root.toString()} is not in the store`)
    return decodeRoot(root, bytes)
  }

  /** Manifest chunks of `root` in order, each decoded to its slots. */
  async * slotChunks (root: CID, options: AbortOptions = {}): AsyncGenerator<Slot[]> {
    for await (const { walk, entries } of this.chunks(root, options)) {
      const out: Slot[] = []
      for (const e of entries) {
        if (typeof e === 'number') {
          for (let k = 0; k < e; k++) out.push({ index: walk.index, offset: walk.next(), length: walk.length, digest: null })
        } else {
          out.push({ index: walk.index, offset: walk.next(), length: walk.length, digest: e })
        }
      }
      yield out
    }
  }

  /**
   * {@link slotChunks} in typed arrays: for bulk readers (export) that would otherwise make
   * and keep an object and a digest view per slot while the chunk's pages are in flight.
   */
  async * slotArrays (root: CID, options: AbortOptions = {}): AsyncGenerator<SlotArrays> {
    for await (const { walk, entries } of this.chunks(root, options)) {
      let count = 0
      for (const e of entries) count += typeof e === 'number' ? e : 1
      const out: SlotArrays = { count, digests: new Uint8Array(count * 32), zero: new Uint8Array(count), offsets: new Float64Array(count), lengths: new Uint32Array(count) }
      let i = 0
      for (const e of entries) {
        if (typeof e === 'number') {
          for (let k = 0; k < e; k++, i++) {
            out.zero[i] = 1
            out.offsets[i] = walk.next()
            out.lengths[i] = walk.length
          }
        } else {
          out.digests.set(e, i * 32)
          out.offsets[i] = walk.next()
          out.lengths[i] = walk.length
          i++
        }
      }
      yield out
    }
  }

  /** Every page slot of an image in order, named by CID. */
  async * pageSlots (root: CID, options: AbortOptions = {}): AsyncGenerator<PageSlot> {
    for await (const slots of this.slotChunks(root, options)) {
      for (const s of slots) yield { index: s.index, offset: s.offset, length: s.length, cid: s.digest == null ? null : digestToCid(s.digest) }
    }
  }

  /** Count zero and distinct pages of an image; throws on the first page not in the store. */
  async countPages (root: CID, options: AbortOptions = {}): Promise<{ zeroPages: number, distinctPages: number }> {
    // distinct pages are distinct locations: every non-zero slot's location as a 64-bit key
    // (pack << 40 | offset; a pack is far below 1 TiB), sorted and counted — 8 bytes a slot,
    // freed on return, where a set of digests took 32 MiB at 4 GiB
    const m = await this.read(root, options)
    const keys = new BigUint64Array(m.pages)
    let n = 0
    let zeroPages = 0
    try {
      for await (const { walk, entries } of this.chunks(root, options)) {
        const digests: Uint8Array[] = []
        const offsets: number[] = []
        for (const e of entries) {
          if (typeof e === 'number') {
            zeroPages += e
            for (let k = 0; k < e; k++) walk.next()
            continue
          }
          offsets.push(walk.next())
          digests.push(e)
        }
        const locs = await this.components.pages.lookup(digests)
        for (let i = 0; i < locs.length; i++) {
          const loc = locs[i]
          if (loc == null) {
            throw new PageNotFoundError(`page ${digestToCid(digests[i]).toString()} (image offset ${offsets[i]}) of image ${root.toString()} is not in the store`)
          }
          keys[n++] = (BigInt(loc.pack) << 40n) | BigInt(loc.offset)
        }
      }
      const held = keys.subarray(0, n).sort()
      let distinctPages = 0
      for (let i = 0; i < n; i++) {
        if (i === 0 || held[i] !== held[i - 1]) distinctPages++
      }
      return { zeroPages, distinctPages }
    } finally {
      release(keys)
    }
  }

  /** The manifest's chunks decoded, in order, with the cursor that places their slots in the image. */
  private async * chunks (root: CID, options: AbortOptions): AsyncGenerator<{ walk: ExtentWalk, entries: DigestEntry[] }> {
    const m = await this.read(root, options)
    const walk = new ExtentWalk(root, m)
    for (const c of m.chunks) {
      options.signal?.throwIfAborted()
      const bytes = await this.components.blocks.getBlock(c)
      if (bytes == null) throw new BlockNotFoundError(`manifest chunk ${c.toString()} of image ${root.toString()} is not in the store`)
      yield { walk, entries: decodeChunkDigests(c, bytes) }
    }
    if (walk.index !== m.pages) throw new ImageFormatError(`manifest ${root.toString()} lists ${walk.index} pages, expected ${m.pages}`)
  }
}
