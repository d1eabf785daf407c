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
import { SHA256_CODE, digestToCid, sha256Digest } from './page.ts'
import type { Extent, Manifest } from './index.ts'

export const DAG_CBOR_CODE = dagCbor.code

export interface Block {
  cid: CID
  bytes: Uint8Array
}

export type ChunkEntry = CID | number

export interface ManifestRootNode {
  format: 'raw' | 'elf'
  size: number
  pageSize: number
  extents: Extent[]
  pages: number
  chunks: CID[]
}

export function encodeBlock (value: unknown): Block {
  const bytes = dagCbor.encode(value)
  return { cid: CID.createV1(DAG_CBOR_CODE, Digest.create(SHA256_CODE, sha256Digest(bytes))), bytes }
}

/** True if `bytes` hash to `cid` (any codec, sha2-256). */
export function verifyBlock (cid: CID, bytes: Uint8Array): boolean {
  return cid.multihash.code === SHA256_CODE && Buffer.from(sha256Digest(bytes)).equals(cid.multihash.digest)
}

export interface ChunkerOptions {
  modulus: number
  min: number
  max: number
}

/** Cuts the page-entry sequence of an image into chunk blocks. */
export class Chunker {
  private readonly options: ChunkerOptions
  private entries: ChunkEntry[] = []
  readonly chunks: CID[] = []

  constructor (options: ChunkerOptions) {
    this.options = options
  }

  /** Add one page by its 32-byte digest (`undefined` for a zero page); returns a finished chunk. */
  push (digest: Uint8Array | undefined): Block | undefined {
    const entries = this.entries
    if (digest == null) {
      const last = entries.length - 1
      if (last >= 0 && typeof entries[last] === 'number') {
        entries[last] = (entries[last] as number) + 1
      } else {
        entries.push(1)
      }
      return entries.length >= this.options.max ? this.cut() : undefined
    }
    entries.push(digestToCid(digest))
    const prefix = ((digest[0] << 24) | (digest[1] << 16) | (digest[2] << 8) | digest[3]) >>> 0
    if ((entries.length >= this.options.min && prefix % this.options.modulus === 0) || entries.length >= this.options.max) {
      return this.cut()
    }
    return undefined
  }

  /** The last, partly filled chunk. */
  flush (): Block | undefined {
    return this.entries.length > 0 ? this.cut() : undefined
  }

  private cut (): Block {
    const block = encodeBlock(this.entries)
    this.entries = []
    this.chunks.push(block.cid)
    return block
  }
}

/** Slots (pages, the last one possibly short) of an extent. */
export function extentPages (extent: Extent, pageSize: number): number {
  return Math.ceil(extent.length / pageSize)
}

export function encodeRoot (node: ManifestRootNode): Block {
  return encodeBlock({
    format: node.format,
    size: node.size,
    pageSize: node.pageSize,
    extents: node.extents.map(e => ({ offset: e.offset, length: e.length })),
    pages: node.pages,
    chunks: node.chunks
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
  return { root, format: node.format, size: node.size, pageSize: node.pageSize, extents, pages: node.pages, chunks }
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
