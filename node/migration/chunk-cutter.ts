/**
 * Cuts an image's manifest chunks again from its slots, keeping only the chunks the root lists
 * as missing: the way both manifest rebuilds (manifest-patch.ts, manifest-thin.ts) turn digests
 * into chunk blocks. A chunk the root does not list is dropped, so wrong digests cost a fetch,
 * never a wrong manifest.
 */
import type { CID } from 'multiformats/cid'
import type { Manifest, Store } from '../../store/index.ts'
import { Chunker, chunkingOf } from '../../store/manifest.ts'
import type { Block } from '../../store/manifest.ts'
import { keyOf } from './cid-key.ts'

export class ChunkCutter {
  private readonly store: Pick<Store, 'putBlock'>
  private readonly wanted: Set<string>
  private readonly signal?: AbortSignal
  private readonly chunker: Chunker

  /** Stores in `store` the chunks among `missing` of `manifest`, cut the way its root says. */
  constructor (store: Pick<Store, 'putBlock'>, manifest: Pick<Manifest, 'chunking'>, missing: CID[], signal?: AbortSignal) {
    this.store = store
    this.chunker = new Chunker(chunkingOf(manifest))
    this.wanted = new Set(missing.map(keyOf))
    this.signal = signal
  }

  /** The next slot is a zero page. */
  async zero (): Promise<void> {
    await this.keep(this.chunker.pushZero())
  }

  /** The next slot holds the page whose digest is `digests[at, at + 32)`. */
  async digest (digests: Buffer, at: number): Promise<void> {
    await this.keep(this.chunker.pushDigest(digests, at))
  }

  /** The next slot holds the page with `digest`, or a zero page without one. */
  async slot (digest: Uint8Array | undefined): Promise<void> {
    await this.keep(this.chunker.push(digest))
  }

  /** After the last slot. */
  async flush (): Promise<void> {
    await this.keep(this.chunker.flush())
  }

  private async keep (block: Block | undefined): Promise<void> {
    if (block != null && this.wanted.has(keyOf(block.cid))) await this.store.putBlock(block.cid, block.bytes, { signal: this.signal })
  }
}

/** A Buffer view of `bytes` (what the Chunker reads digests from). */
export function bufferOf (bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}
