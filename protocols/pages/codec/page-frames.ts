/**
 * Page response frames (server → client): a fixed binary layout, because page frames are the
 * hot path and dag-cbor would copy every page twice (big-endian integers):
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
 * A missing entry has length 0. A frame must be consumed exactly. Across sites the server
 * compresses a frame's entries together (pages of one frame share context, which compresses
 * far better than page by page) and sends the frame compressed only when that pays.
 */
import { zstdCompressSync, zstdDecompressSync, constants as zlibConstants } from 'node:zlib'
import { Uint8ArrayList } from 'uint8arraylist'
import { InvalidMessageError } from '../errors.ts'
import { DEFAULT_MAX_CIDS_PER_REQUEST, MAX_PAGE_BYTES, RESPONSE_ENTRY_HEADER, RESPONSE_FRAME_HEADER } from '../constants.ts'
import { FLAG_LAST, FLAG_ZSTD, FRAME_PAGES, flat } from './frame.ts'

export const PAGE_MISSING = 0
export const PAGE_RAW = 1
export const PAGE_DELTA = 2
export type PageKind = typeof PAGE_MISSING | typeof PAGE_RAW | typeof PAGE_DELTA

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

const EMPTY = new Uint8Array(0)

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
