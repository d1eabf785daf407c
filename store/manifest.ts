/**
 * Image manifests as dag-cbor blocks. The root holds the layout (format, size, page size,
 * extents) and the list of chunk blocks; a chunk lists page entries in order, where an entry
 * is a page CID link or an integer n meaning n zero pages. Chunks end at content-defined
 * boundaries over the page digests, so identical runs in two images share chunk blocks even
 * when shifted.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { ImageFormatError } from './errors.ts'
import { SHA256_CODE, sha256Digest } from './page.ts'
import type { Extent, Manifest } from './index.ts'
import { DEFAULT_CHUNK_MAX, DEFAULT_CHUNK_MIN, DEFAULT_CHUNK_MODULUS } from './options.ts'

export const DAG_CBOR_CODE = dagCbor.code

export interface Block {
  cid: CID
  bytes: Uint8Array
}

export type ChunkEntry = CID | number

/** What a manifest root block holds: the decoded {@link Manifest} without its own CID. */
export type ManifestRootNode = Omit<Manifest, 'root'>

export function encodeBlock (value: unknown): Block {
  const bytes = dagCbor.encode(value)
  return { cid: CID.createV1(DAG_CBOR_CODE, Digest.create(SHA256_CODE, sha256Digest(bytes))), bytes }
}

// one check for pages and manifest blocks alike (any codec, sha2-256)
export { verifyBlock } from './page.ts'

export interface ChunkerOptions {
  modulus: number
  min: number
  max: number
}

/** A chunk entry inside the store: a page digest (32 bytes) or a run of n zero pages. */
export type DigestEntry = Uint8Array | number

/**
 * Cuts the page-entry sequence of an image into chunk blocks. Entries are encoded as they
 * arrive (digests are copied straight from the hash output), so no object is made per page.
 */
export class Chunker {
  private readonly options: ChunkerOptions
  private body: Buffer
  private len = 0
  private count = 0
  /** Zero pages in the open run, not yet written to `body`. */
  private zeros = 0
  readonly chunks: CID[] = []

  constructor (options: ChunkerOptions) {
    this.options = options
    this.body = Buffer.allocUnsafe(options.max * LINK_BYTES + 9)
  }

  /** Add a zero page; returns a finished chunk. */
  pushZero (): Block | undefined {
    if (this.zeros === 0) this.count++
    this.zeros++
    return this.count >= this.options.max ? this.cut() : undefined
  }

  /** Add the page whose 32-byte digest is `src[at, at + 32)`; returns a finished chunk. */
  pushDigest (src: Buffer, at: number): Block | undefined {
    this.flushZeros()
    this.body.set(LINK_HEAD, this.len)
    src.copy(this.body, this.len + LINK_HEAD.byteLength, at, at + 32)
    this.len += LINK_BYTES
    this.count++
    const prefix = ((src[at] << 24) | (src[at + 1] << 16) | (src[at + 2] << 8) | src[at + 3]) >>> 0
    if ((this.count >= this.options.min && prefix % this.options.modulus === 0) || this.count >= this.options.max) {
      return this.cut()
    }
    return undefined
  }

  /** Add one page by its digest (`undefined` for a zero page); returns a finished chunk. */
  push (digest: Uint8Array | undefined): Block | undefined {
    if (digest == null) return this.pushZero()
    return this.pushDigest(Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength), 0)
  }

  /** The last, partly filled chunk. */
  flush (): Block | undefined {
    return this.count > 0 ? this.cut() : undefined
  }

  private flushZeros (): void {
    if (this.zeros === 0) return
    this.len = writeHead(this.body, this.len, 0, this.zeros)
    this.zeros = 0
  }

  private cut (): Block {
    this.flushZeros()
    const bytes = Buffer.allocUnsafe(headLength(this.count) + this.len)
    const at = writeHead(bytes, 0, 4, this.count)
    this.body.copy(bytes, at, 0, this.len)
    this.len = 0
    this.count = 0
    const block = { cid: CID.createV1(DAG_CBOR_CODE, Digest.create(SHA256_CODE, sha256Digest(bytes))), bytes }
    this.chunks.push(block.cid)
    return block
  }
}

// A page link in dag-cbor: tag 42, a 37-byte string: 0x00, then CIDv1 raw sha2-256 (0x01 0x55 0x12 0x20 digest).
const LINK_HEAD = Uint8Array.from([0xd8, 0x2a, 0x58, 0x25, 0x00, 0x01, 0x55, 0x12, 0x20])
const LINK_BYTES = LINK_HEAD.byteLength + 32

function headLength (n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9
}

function writeHead (buf: Buffer, at: number, major: number, n: number): number {
  const m = major << 5
  if (n < 24) { buf[at] = m | n; return at + 1 }
  if (n < 0x100) { buf[at] = m | 24; buf[at + 1] = n; return at + 2 }
  if (n < 0x10000) { buf[at] = m | 25; buf.writeUInt16BE(n, at + 1); return at + 3 }
  if (n < 0x100000000) { buf[at] = m | 26; buf.writeUInt32BE(n, at + 1); return at + 5 }
  buf[at] = m | 27
  buf.writeBigUInt64BE(BigInt(n), at + 1)
  return at + 9
}

/**
 * Encode chunk entries as a dag-cbor list of page links and zero-run integers. Written by hand
 * (canonical, minimal-length heads) because building a CID object per page costs more than
 * hashing it; `decodeChunk` and any dag-cbor decoder read the result.
 */
export function encodeChunk (entries: DigestEntry[]): Uint8Array {
  let size = headLength(entries.length)
  for (const e of entries) size += typeof e === 'number' ? headLength(e) : LINK_BYTES
  const buf = Buffer.allocUnsafe(size)
  let at = writeHead(buf, 0, 4, entries.length)
  for (const e of entries) {
    if (typeof e === 'number') {
      at = writeHead(buf, at, 0, e)
    } else {
      buf.set(LINK_HEAD, at)
      buf.set(e, at + LINK_HEAD.byteLength)
      at += LINK_BYTES
    }
  }
  return buf
}

function readHead (buf: Buffer, at: number): [major: number, n: number, next: number] | undefined {
  const b = buf[at]
  const major = b >> 5
  const info = b & 0x1f
  if (info < 24) return [major, info, at + 1]
  if (info === 24 && at + 2 <= buf.length) return [major, buf[at + 1], at + 2]
  if (info === 25 && at + 3 <= buf.length) return [major, buf.readUInt16BE(at + 1), at + 3]
  if (info === 26 && at + 5 <= buf.length) return [major, buf.readUInt32BE(at + 1), at + 5]
  if (info === 27 && at + 9 <= buf.length) return [major, Number(buf.readBigUInt64BE(at + 1)), at + 9]
  return undefined
}

/** Decode a chunk block into page digests and zero runs. */
export function decodeChunkDigests (cid: CID, bytes: Uint8Array): DigestEntry[] {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const fast = (): DigestEntry[] | undefined => {
    const head = buf.length > 0 ? readHead(buf, 0) : undefined
    if (head == null || head[0] !== 4) return undefined
    const out: DigestEntry[] = new Array(head[1])
    let at = head[2]
    for (let i = 0; i < head[1]; i++) {
      if (at >= buf.length) return undefined
      if (buf[at] === 0xd8) {
        if (at + LINK_BYTES > buf.length) return undefined
        for (let k = 0; k < LINK_HEAD.byteLength; k++) if (buf[at + k] !== LINK_HEAD[k]) return undefined
        out[i] = buf.subarray(at + LINK_HEAD.byteLength, at + LINK_BYTES)
        at += LINK_BYTES
      } else {
        const h = readHead(buf, at)
        if (h == null || h[0] !== 0 || h[1] === 0) return undefined
        out[i] = h[1]
        at = h[2]
      }
    }
    return at === buf.length ? out : undefined
  }
  const entries = fast()
  if (entries != null) return entries
  // anything unusual goes through the full decoder, which names what is wrong
  return decodeChunk(cid, bytes).map(e => {
    if (typeof e === 'number') return e
    if (e.version !== 1 || e.code !== 0x55 || e.multihash.code !== SHA256_CODE || e.multihash.digest.byteLength !== 32) {
      throw new ImageFormatError(`manifest chunk ${cid.toString()} links a block that is not a raw sha2-256 page`)
    }
    return e.multihash.digest
  })
}

/** Slots (pages, the last one possibly short) of an extent. */
export function extentPages (extent: Extent, pageSize: number): number {
  return Math.ceil(extent.length / pageSize)
}

/** Largest chunk modulus or entry count a manifest root may name. */
const MAX_CHUNKING = 1 << 16

/** Whether `c` is the format's default chunking. */
export function isDefaultChunking (c: ChunkerOptions): boolean {
  return c.modulus === DEFAULT_CHUNK_MODULUS && c.min === DEFAULT_CHUNK_MIN && c.max === DEFAULT_CHUNK_MAX
}

/** How `manifest`'s chunks were cut. */
export function chunkingOf (manifest: Pick<Manifest, 'chunking'>): ChunkerOptions {
  return manifest.chunking ?? { modulus: DEFAULT_CHUNK_MODULUS, min: DEFAULT_CHUNK_MIN, max: DEFAULT_CHUNK_MAX }
}

export function encodeRoot (node: ManifestRootNode): Block {
  return encodeBlock({
    format: node.format,
    size: node.size,
    pageSize: node.pageSize,
    extents: node.extents.map(e => ({ offset: e.offset, length: e.length })),
    pages: node.pages,
    chunks: node.chunks,
    ...(node.chunking != null && !isDefaultChunking(node.chunking) ? { chunking: { modulus: node.chunking.modulus, min: node.chunking.min, max: node.chunking.max } } : {})
  })
}

function fail (root: CID, why: string): never {
  throw new ImageFormatError(`manifest ${root.toString()} is invalid: ${why}`)
}

function isInt (n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
}

/** Decode and validate a manifest root block. */
export function decodeRoot (root: CID, bytes: Uint8Array): Manifest {
  let node: any
  try {
    node = dagCbor.decode(bytes)
  } catch (err: any) {
    fail(root, `not dag-cbor (${err.message})`)
  }
  if (node == null || typeof node !== 'object') fail(root, 'not a map')
  if (node.format !== 'raw' && node.format !== 'elf') fail(root, 'format is not raw or elf')
  if (!isInt(node.size)) fail(root, 'size is not an integer')
  if (!isInt(node.pageSize) || node.pageSize === 0) fail(root, 'pageSize is not a positive integer')
  if (!isInt(node.pages)) fail(root, 'pages is not an integer')
  if (!Array.isArray(node.extents)) fail(root, 'extents is not a list')
  if (!Array.isArray(node.chunks)) fail(root, 'chunks is not a list')
  let at = 0
  let pages = 0
  const extents: Extent[] = []
  for (const e of node.extents) {
    if (e == null || !isInt(e.offset) || !isInt(e.length) || e.length === 0) fail(root, 'an extent is malformed')
    if (e.offset !== at) fail(root, `extents do not partition the image at byte ${at}`)
    at += e.length
    pages += extentPages(e, node.pageSize)
    extents.push({ offset: e.offset, length: e.length })
  }
  if (at !== node.size) fail(root, `extents cover ${at} bytes, size is ${node.size}`)
  if (pages !== node.pages) fail(root, `extents hold ${pages} pages, pages is ${node.pages}`)
  const chunks: CID[] = []
  for (const c of node.chunks) {
    const cid = CID.asCID(c)
    if (cid == null) fail(root, 'a chunk link is not a CID')
    chunks.push(cid)
  }
  const manifest: Manifest = { root, format: node.format, size: node.size, pageSize: node.pageSize, extents, pages: node.pages, chunks }
  if (node.chunking !== undefined) {
    const c = node.chunking
    // bounded like the store's own options: a hostile root cannot make a rebuild allocate more
    if (c == null || !isInt(c.modulus) || c.modulus < 1 || (c.modulus & (c.modulus - 1)) !== 0 || c.modulus > MAX_CHUNKING ||
      !isInt(c.min) || !isInt(c.max) || c.min < 1 || c.min > c.max || c.max > MAX_CHUNKING) fail(root, 'chunking is malformed')
    manifest.chunking = { modulus: c.modulus, min: c.min, max: c.max }
  }
  return manifest
}

/** Decode a chunk block into its entries. */
export function decodeChunk (cid: CID, bytes: Uint8Array): ChunkEntry[] {
  let node: unknown
  try {
    node = dagCbor.decode(bytes)
  } catch (err: any) {
    throw new ImageFormatError(`manifest chunk ${cid.toString()} is not dag-cbor (${err.message})`)
  }
  if (!Array.isArray(node)) throw new ImageFormatError(`manifest chunk ${cid.toString()} is not a list`)
  const out: ChunkEntry[] = []
  for (const e of node) {
    if (isInt(e) && e > 0) {
      out.push(e)
      continue
    }
    const c = CID.asCID(e)
    if (c == null) throw new ImageFormatError(`manifest chunk ${cid.toString()} has an entry that is neither a CID nor a zero run`)
    out.push(c)
  }
  return out
}
