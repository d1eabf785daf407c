/**
 * What goes over the wire of `/memfabric/pages/1.0.0`. Every frame is length-prefixed
 * (unsigned varint, `lpStream`).
 *
 * Page request (client → server): dag-cbor map
 *   `{ id: uint32, pages: bytes, compress?: 'zstd', refMask?: bytes, refs?: bytes }`
 * `pages` is the sha2-256 digests of the pages asked (32 bytes each, 1…maxCids of them: page
 * CIDs differ only in their digest, so the CID prefix is not repeated). `refs` (only with
 * `compress`) holds the digests of pages the client holds that are probably similar, one for
 * each bit set in `refMask` (bit i, LSB first in byte i/8, = page i has one); the server may
 * send such a page zstd-compressed with its reference page as dictionary.
 *
 * Manifest-patch request: dag-cbor map `{ id: uint32, patch: CID link }` asks how image `patch`
 * differs, slot by slot, from the older image the server would use as its basis, so a client
 * that holds that basis's manifest can rebuild the image's manifest instead of fetching it.
 *
 * Prefix request: `{ id: uint32, prefixes: bytes, compress?: 'zstd' }` asks for pages by the
 * first PREFIX_BYTES bytes of their digest (1…maxCids of them); the answer is the same page
 * frames, an entry per prefix, missing where the server holds no page with that prefix. The
 * client hashes each page and keeps it only if its digest starts with the prefix asked.
 *
 * Thin-manifest request: `{ id: uint32, thin: CID link }` asks for image `thin`'s slots as
 * zero runs and digest prefixes (see thin.ts): a few bytes a slot instead of the manifest's
 * 36, from which a client that holds or can find most pages rebuilds the manifest blocks.
 *
 * Response (server → client): a fixed binary layout, because page frames are the hot path
 * and dag-cbor would copy every page twice (big-endian integers):
 *
 * ```
 * 0      u8   type = 0x01 (pages)
 * 1      u8   flags: bit 0 = last frame of this request; bit 1 = the entries that follow are
 *           one zstd frame (decompressed, they have the layout below); other bits zero
 * 2      u32  id of the request
 * 6      u32  start: index in the request's cids of the first entry
 * 10     u32  count of entries
 * 14     entries, each: u8 kind (0 missing, 1 raw, 2 zstd with the request's ref as dictionary)
 *          | u32 length | length bytes
 * ```
 * Manifest-patch response, one or more frames: u8 type = 0x02 | u8 flags (bit 0 last) | u32 id |
 * u16 length | basis root CID bytes (length 0: no basis, then no entries) | u32 count | count
 * entries, each u32 slot index (ascending over all frames) | u8 (0 zero page, 1 page) followed,
 * for a page, by its 32-byte sha2-256 digest.
 * A missing entry has length 0. A frame must be consumed exactly. Across sites the server
 * compresses a frame's entries together (pages of one frame share context, which compresses
 * far better than page by page) and sends the frame compressed only when that pays.
 */
import { zstdCompressSync, zstdDecompressSync, constants as zlibConstants } from 'node:zlib'
import { encode as cborEncode, decode as cborDecode } from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { Uint8ArrayList } from 'uint8arraylist'
import { digestToCid, isPageCid } from '../../store/page.ts'
import { InvalidMessageError } from './errors.ts'
import { DEFAULT_MAX_CIDS_PER_REQUEST, MAX_PAGE_BYTES, PREFIX_BYTES, RESPONSE_ENTRY_HEADER, RESPONSE_FRAME_HEADER } from './constants.ts'

export const FRAME_PAGES = 0x01
export const FRAME_PATCH = 0x02
export const FLAG_LAST = 0x01
export const FLAG_ZSTD = 0x02

export const PAGE_MISSING = 0
export const PAGE_RAW = 1
export const PAGE_DELTA = 2
export type PageKind = typeof PAGE_MISSING | typeof PAGE_RAW | typeof PAGE_DELTA

export type Compression = 'zstd'

export interface PageRequest {
  id: number
  cids: CID[]
  compress?: Compression
  /** Per cid, a page the client holds that the server may compress against. */
  refs?: Array<CID | null>
}

export interface PatchRequest {
  id: number
  /** Root of the image whose manifest the client wants to rebuild. */
  patch: CID
}

/** Pages by digest prefix: PREFIX_BYTES bytes each, concatenated. */
export interface PrefixRequest {
  id: number
  prefixes: Uint8Array
  compress?: Compression
}

export interface ThinRequest {
  id: number
  /** Root of the image whose slots the client wants as prefixes. */
  thin: CID
}

export type AnyRequest = PageRequest | PatchRequest | PrefixRequest | ThinRequest

/** How an image differs from its basis: at `slots[i]`, a zero page (`kinds[i]` 0) or the page `digests[i]`. */
export interface ManifestPatch {
  basis: CID
  slots: Uint32Array
  kinds: Uint8Array
  /** 32 bytes per slot (unused for zero pages). */
  digests: Uint8Array
}

export interface PageEntry {
  kind: PageKind
  /** Empty for a missing page; compressed bytes for PAGE_DELTA. */
  bytes: Uint8Array
}

export interface PageResponse {
  id: number
  start: number
  last: boolean
  entries: PageEntry[]
}

const MAX_U32 = 0xffffffff
const DIGEST_BYTES = 32
const EMPTY = new Uint8Array(0)

function flat (data: Uint8Array | Uint8ArrayList): Uint8Array {
  return data instanceof Uint8Array ? data : data.subarray()
}

function isU32 (n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_U32
}

export function encodeRequest (req: PageRequest): Uint8Array {
  const msg: Record<string, unknown> = { id: req.id, pages: packDigests(req.cids) }
  if (req.compress != null) {
    msg.compress = req.compress
  }
  if (req.refs != null) {
    const mask = new Uint8Array(Math.ceil(req.cids.length / 8))
    const refs: CID[] = []
    req.refs.forEach((ref, i) => {
      if (ref == null) return
      mask[i >> 3] |= 1 << (i & 7)
      refs.push(ref)
    })
    msg.refMask = mask
    msg.refs = packDigests(refs)
  }
  return cborEncode(msg)
}

function packDigests (cids: CID[]): Uint8Array {
  const out = new Uint8Array(cids.length * DIGEST_BYTES)
  cids.forEach((cid, i) => { out.set(cid.multihash.digest, i * DIGEST_BYTES) })
  return out
}

function unpackDigests (bytes: unknown, field: string): CID[] {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength % DIGEST_BYTES !== 0) {
    throw new InvalidMessageError(`request ${field} must be bytes, 32 per page`)
  }
  const cids: CID[] = new Array(bytes.byteLength / DIGEST_BYTES)
  for (let i = 0; i < cids.length; i++) cids[i] = digestToCid(bytes.slice(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES))
  return cids
}

export function encodePatchRequest (req: PatchRequest): Uint8Array {
  return cborEncode({ id: req.id, patch: req.patch })
}

export function encodePrefixRequest (req: PrefixRequest): Uint8Array {
  return cborEncode(req.compress == null ? { id: req.id, prefixes: req.prefixes } : { id: req.id, prefixes: req.prefixes, compress: req.compress })
}

export function encodeThinRequest (req: ThinRequest): Uint8Array {
  return cborEncode({ id: req.id, thin: req.thin })
}

/** Entries per manifest-patch frame (about 600 KiB). */
export const PATCH_FRAME_ENTRIES = 16_384

/** The frames of a manifest patch (one frame with no basis when `patch` is undefined). */
export function encodePatchResponse (id: number, patch: ManifestPatch | undefined): Uint8Array[] {
  const basis = patch?.basis.bytes ?? new Uint8Array(0)
  const total = patch?.slots.length ?? 0
  const frames: Uint8Array[] = []
  for (let first = 0; first === 0 || first < total; first += PATCH_FRAME_ENTRIES) {
    const count = Math.min(PATCH_FRAME_ENTRIES, total - first)
    let length = 12 + basis.byteLength
    for (let i = first; i < first + count; i++) length += patch!.kinds[i] === 0 ? 5 : 5 + DIGEST_BYTES
    const out = Buffer.allocUnsafe(length)
    out[0] = FRAME_PATCH
    out[1] = first + count >= total ? FLAG_LAST : 0
    out.writeUInt32BE(id, 2)
    out.writeUInt16BE(basis.byteLength, 6)
    out.set(basis, 8)
    let at = 8 + basis.byteLength
    out.writeUInt32BE(count, at)
    at += 4
    for (let i = first; i < first + count; i++) {
      out.writeUInt32BE(patch!.slots[i], at)
      const kind = patch!.kinds[i] === 0 ? 0 : 1
      out[at + 4] = kind
      at += 5
      if (kind === 1) {
        out.set(patch!.digests.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES), at)
        at += DIGEST_BYTES
      }
    }
    frames.push(out)
  }
  return frames
}

/** One frame of a manifest patch. Throws InvalidMessageError. */
export function decodePatchFrame (data: Uint8Array | Uint8ArrayList): { id: number, last: boolean, basis?: CID, slots: number[], kinds: number[], digests: Uint8Array[] } {
  const bytes = flat(data)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (bytes.byteLength < 12 || bytes[0] !== FRAME_PATCH || (bytes[1] & ~FLAG_LAST) !== 0) {
    throw new InvalidMessageError('not a manifest-patch frame')
  }
  const id = view.getUint32(2)
  const basisLength = view.getUint16(6)
  if (8 + basisLength + 4 > bytes.byteLength) {
    throw new InvalidMessageError('manifest-patch frame truncated')
  }
  let basis: CID | undefined
  if (basisLength > 0) {
    try {
      basis = CID.decode(bytes.slice(8, 8 + basisLength))
    } catch (err: any) {
      throw new InvalidMessageError(`manifest-patch basis is not a CID: ${err.message}`)
    }
  }
  let at = 8 + basisLength
  const count = view.getUint32(at)
  at += 4
  if (count > PATCH_FRAME_ENTRIES || (basis == null && count > 0)) {
    throw new InvalidMessageError(`manifest-patch frame holds ${count} entries`)
  }
  const slots: number[] = new Array(count)
  const kinds: number[] = new Array(count)
  const digests: Uint8Array[] = new Array(count)
  for (let i = 0; i < count; i++) {
    if (at + 5 > bytes.byteLength) throw new InvalidMessageError('manifest-patch frame truncated')
    slots[i] = view.getUint32(at)
    kinds[i] = bytes[at + 4]
    at += 5
    if (kinds[i] === 1) {
      if (at + DIGEST_BYTES > bytes.byteLength) throw new InvalidMessageError('manifest-patch frame truncated')
      digests[i] = bytes.slice(at, at + DIGEST_BYTES)
      at += DIGEST_BYTES
    } else if (kinds[i] !== 0) {
      throw new InvalidMessageError(`manifest-patch entry of unknown kind ${kinds[i]}`)
    }
  }
  if (at !== bytes.byteLength) {
    throw new InvalidMessageError(`manifest-patch frame has ${bytes.byteLength - at} trailing bytes`)
  }
  return { id, last: (bytes[1] & FLAG_LAST) !== 0, basis, slots, kinds, digests }
}

/** Decode and validate a page request frame. Throws InvalidMessageError. */
export function decodeRequest (data: Uint8Array | Uint8ArrayList, maxCids = DEFAULT_MAX_CIDS_PER_REQUEST): PageRequest {
  const req = decodeAnyRequest(data, maxCids)
  if (!isPageRequest(req)) {
    throw new InvalidMessageError('expected a page request')
  }
  return req
}

/** Decode and validate a request frame of any kind. Throws InvalidMessageError. */
export function decodeAnyRequest (data: Uint8Array | Uint8ArrayList, maxCids = DEFAULT_MAX_CIDS_PER_REQUEST): AnyRequest {
  let msg: unknown
  try {
    msg = cborDecode(flat(data))
  } catch (err: any) {
    throw new InvalidMessageError(`request is not dag-cbor: ${err?.message}`, { cause: err })
  }
  if (msg == null || typeof msg !== 'object' || Array.isArray(msg) || msg instanceof Uint8Array || CID.asCID(msg) != null) {
    throw new InvalidMessageError('request is not a map')
  }
  const m = msg as Record<string, unknown>
  // the field that names the kind of request: `pages` unless one of the others is present
  const kind = (['patch', 'thin', 'prefixes'] as const).find(k => k in m) ?? 'pages'
  for (const key of Object.keys(m)) {
    if (!REQUEST_FIELDS[kind].includes(key)) {
      throw new InvalidMessageError(`request has unknown field ${JSON.stringify(key.slice(0, 32))}`)
    }
  }
  if (!isU32(m.id)) {
    throw new InvalidMessageError('request id is not a uint32')
  }
  if (m.compress !== undefined && m.compress !== 'zstd') {
    throw new InvalidMessageError('request compress must be "zstd" or absent')
  }
  if (kind === 'patch' || kind === 'thin') {
    const root = CID.asCID(m[kind])
    if (root == null) {
      throw new InvalidMessageError(`request ${kind} is not a CID`)
    }
    return kind === 'patch' ? { id: m.id, patch: root } : { id: m.id, thin: root }
  }
  if (kind === 'prefixes') {
    const prefixes = m.prefixes
    if (!(prefixes instanceof Uint8Array) || prefixes.byteLength === 0 || prefixes.byteLength % PREFIX_BYTES !== 0 || prefixes.byteLength / PREFIX_BYTES > maxCids) {
      throw new InvalidMessageError(`request prefixes must be 1…${maxCids} prefixes of ${PREFIX_BYTES} bytes`)
    }
    return m.compress === 'zstd' ? { id: m.id, prefixes, compress: 'zstd' } : { id: m.id, prefixes }
  }
  const cids = unpackDigests(m.pages, 'pages')
  if (cids.length === 0 || cids.length > maxCids) {
    throw new InvalidMessageError(`request pages must hold 1…${maxCids} digests`)
  }
  const req: PageRequest = m.compress === 'zstd' ? { id: m.id, cids, compress: 'zstd' } : { id: m.id, cids }
  if (m.refs !== undefined || m.refMask !== undefined) {
    const mask = m.refMask
    if (req.compress == null || !(mask instanceof Uint8Array) || mask.byteLength !== Math.ceil(cids.length / 8)) {
      throw new InvalidMessageError('request refs need compress and a refMask of one bit per page')
    }
    const refs = unpackDigests(m.refs, 'refs')
    let next = 0
    req.refs = cids.map((_, i) => (mask[i >> 3] & (1 << (i & 7))) !== 0 ? refs[next++] ?? null : null)
    if (next !== refs.length) {
      throw new InvalidMessageError('request refMask does not match its refs')
    }
  }
  return req
}

const REQUEST_FIELDS = {
  pages: ['id', 'pages', 'compress', 'refMask', 'refs'],
  patch: ['id', 'patch'],
  thin: ['id', 'thin'],
  prefixes: ['id', 'prefixes', 'compress']
}

export function isPatchRequest (req: AnyRequest): req is PatchRequest {
  return 'patch' in req
}

export function isPageRequest (req: AnyRequest): req is PageRequest {
  return 'cids' in req
}

export function isPrefixRequest (req: AnyRequest): req is PrefixRequest {
  return 'prefixes' in req
}

export function isThinRequest (req: AnyRequest): req is ThinRequest {
  return 'thin' in req
}


/** Bytes a response frame will take for these entries. */
export function responseFrameLength (entries: PageEntry[]): number {
  let n = RESPONSE_FRAME_HEADER
  for (const e of entries) {
    n += RESPONSE_ENTRY_HEADER + e.bytes.byteLength
  }
  return n
}

/**
 * Encode a response frame as a list of chunks that points at the page bytes instead of
 * copying them (the encryption layer below copies once anyway).
 */
export function encodeResponseList (res: PageResponse): Uint8ArrayList {
  const heads = Buffer.allocUnsafe(RESPONSE_FRAME_HEADER + RESPONSE_ENTRY_HEADER * res.entries.length)
  heads[0] = FRAME_PAGES
  heads[1] = res.last ? FLAG_LAST : 0
  heads.writeUInt32BE(res.id, 2)
  heads.writeUInt32BE(res.start, 6)
  heads.writeUInt32BE(res.entries.length, 10)
  const list = new Uint8ArrayList()
  let at = RESPONSE_FRAME_HEADER
  let headStart = 0
  for (const e of res.entries) {
    heads[at] = e.kind
    heads.writeUInt32BE(e.bytes.byteLength, at + 1)
    at += RESPONSE_ENTRY_HEADER
    if (e.bytes.byteLength > 0) {
      list.append(heads.subarray(headStart, at), e.bytes)
      headStart = at
    }
  }
  if (headStart < at) {
    list.append(heads.subarray(headStart, at))
  }
  return list
}

/** Encode a response frame into one buffer. */
export function encodeResponse (res: PageResponse): Uint8Array {
  return encodeResponseList(res).subarray()
}

/** Read access shared by a flat frame and a chunk list, so a frame is never concatenated. */
interface FrameReader {
  length: number
  u8 (at: number): number
  u32 (at: number): number
  bytes (start: number, end: number): Uint8Array
}

function readerOf (data: Uint8Array | Uint8ArrayList): FrameReader {
  if (data instanceof Uint8Array) {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
    return { length: data.byteLength, u8: at => data[at], u32: at => view.getUint32(at), bytes: (a, b) => data.subarray(a, b) }
  }
  // a page inside one chunk is a view; only pages across a chunk edge are copied
  return { length: data.byteLength, u8: at => data.get(at), u32: at => data.getUint32(at), bytes: (a, b) => data.subarray(a, b) }
}

/**
 * Decode and validate a response frame. Page bytes are views into `data` where possible
 * (no copy of the frame). Throws InvalidMessageError.
 */
export function decodeResponse (data: Uint8Array | Uint8ArrayList, maxEntries = DEFAULT_MAX_CIDS_PER_REQUEST): PageResponse {
  const r = readerOf(data)
  if (r.length < RESPONSE_FRAME_HEADER) {
    throw new InvalidMessageError(`response frame too short (${r.length} bytes)`)
  }
  if (r.u8(0) !== FRAME_PAGES) {
    throw new InvalidMessageError(`unknown response frame type ${r.u8(0)}`)
  }
  const flags = r.u8(1)
  if ((flags & ~(FLAG_LAST | FLAG_ZSTD)) !== 0) {
    throw new InvalidMessageError(`unknown response flags ${flags}`)
  }
  if ((flags & FLAG_ZSTD) !== 0) {
    return decodeResponse(inflate(data, r.length, maxEntries), maxEntries)
  }
  const id = r.u32(2)
  const start = r.u32(6)
  const count = r.u32(10)
  if (count > maxEntries) {
    throw new InvalidMessageError(`response holds ${count} entries, more than ${maxEntries}`)
  }
  const entries: PageEntry[] = new Array(count)
  let pos = RESPONSE_FRAME_HEADER
  for (let i = 0; i < count; i++) {
    if (pos + RESPONSE_ENTRY_HEADER > r.length) {
      throw new InvalidMessageError('response frame truncated in an entry header')
    }
    const kind = r.u8(pos)
    const length = r.u32(pos + 1)
    pos += RESPONSE_ENTRY_HEADER
    if (kind === PAGE_MISSING) {
      if (length !== 0) {
        throw new InvalidMessageError('missing entry carries bytes')
      }
    } else if (kind === PAGE_RAW || kind === PAGE_DELTA) {
      if (length === 0 || length > MAX_PAGE_BYTES) {
        throw new InvalidMessageError(`page entry of ${length} bytes (1…${MAX_PAGE_BYTES})`)
      }
    } else {
      throw new InvalidMessageError(`unknown entry kind ${kind}`)
    }
    if (pos + length > r.length) {
      throw new InvalidMessageError('response frame truncated in page bytes')
    }
    entries[i] = { kind, bytes: length === 0 ? EMPTY : r.bytes(pos, pos + length) }
    pos += length
  }
  if (pos !== r.length) {
    throw new InvalidMessageError(`response frame has ${r.length - pos} trailing bytes`)
  }
  return { id, start, last: (flags & FLAG_LAST) !== 0, entries }
}

/**
 * Compress a frame's entries as one zstd frame; undefined when that does not pay. On the event
 * loop (~18 ms a MiB at level 8): in libuv's pool it queued behind other work's fdatasyncs.
 */
export async function deflateResponse (frame: Uint8Array, level: number, minSaving: number): Promise<Uint8Array | undefined> {
  const body = zstdCompressSync(frame.subarray(RESPONSE_FRAME_HEADER), { params: { [zlibConstants.ZSTD_c_compressionLevel]: level } })
  if (body.byteLength > (frame.byteLength - RESPONSE_FRAME_HEADER) * minSaving) {
    return undefined
  }
  const out = Buffer.allocUnsafe(RESPONSE_FRAME_HEADER + body.byteLength)
  out.set(frame.subarray(0, RESPONSE_FRAME_HEADER))
  out[1] |= FLAG_ZSTD
  out.set(body, RESPONSE_FRAME_HEADER)
  return out
}

/** The plain frame inside a compressed one, its size bounded before anything is allocated. */
function inflate (data: Uint8Array | Uint8ArrayList, length: number, maxEntries: number): Uint8Array {
  const flatData = flat(data)
  const maxBody = maxEntries * (RESPONSE_ENTRY_HEADER + MAX_PAGE_BYTES)
  let body: Uint8Array
  try {
    body = zstdDecompressSync(flatData.subarray(RESPONSE_FRAME_HEADER, length), { maxOutputLength: maxBody })
  } catch (err: any) {
    throw new InvalidMessageError(`compressed frame does not decompress within ${maxBody} bytes: ${err.message}`)
  }
  const out = Buffer.allocUnsafe(RESPONSE_FRAME_HEADER + body.byteLength)
  out.set(flatData.subarray(0, RESPONSE_FRAME_HEADER))
  out[1] &= ~FLAG_ZSTD
  out.set(body, RESPONSE_FRAME_HEADER)
  return out
}
