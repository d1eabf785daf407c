/**
 * Thin manifests: an image's slots in order as runs of zero pages and PREFIX_BYTES-byte digest
 * prefixes, about a quarter of the manifest's 36 bytes a slot. A client resolves each prefix
 * to a page it holds, or fetches the page by prefix; hashing the page gives its full digest.
 * It then cuts the manifest's chunk blocks itself and keeps only those whose CID the root
 * lists, so a prefix that resolves to the wrong page costs a fetch, never a wrong manifest.
 *
 * Response frame (server → client):
 *
 * ```
 * 0      u8   type = 0x03 (thin manifest)
 * 1      u8   flags: bit 0 = last frame; bit 1 = the entries are one zstd frame;
 *           bit 2 = the server does not hold the image (then no entries); other bits zero
 * 2      u32  id of the request
 * 6      u32  count of entries (at most THIN_FRAME_ENTRIES)
 * 10     entries, THIN_ENTRY_BYTES each: u8 kind, then 8 bytes
 *          kind 0: a run of zero pages, u32 length (≥ 1) and 4 zero bytes
 *          kind 1: a page, the first 8 bytes of its sha2-256 digest
 * ```
 */
import { zstdCompressSync, zstdDecompressSync, constants as zlibConstants } from 'node:zlib'
import type { CID } from 'multiformats/cid'
import type { Uint8ArrayList } from 'uint8arraylist'
import { PREFIX_BYTES } from '../constants.ts'
import { InvalidMessageError } from '../errors.ts'
import { FLAG_LAST, FLAG_ZSTD, FRAME_THIN } from './frame.ts'

const FLAG_ABSENT = 0x04
const HEADER = 10

export const THIN_ZERO_RUN = 0
export const THIN_PAGE = 1
export const THIN_ENTRY_BYTES = 1 + PREFIX_BYTES
/** Entries per frame (576 KiB before compression). */
export const THIN_FRAME_ENTRIES = 65_536

/** An image's slots as thin-manifest entries (THIN_ENTRY_BYTES each). */
export interface ThinManifest {
  entries: Uint8Array
  count: number
}

export interface ThinFrame extends ThinManifest {
  id: number
  last: boolean
  /** The server does not hold the image. */
  absent: boolean
}

function header (id: number, flags: number, count: number): Buffer {
  const out = Buffer.alloc(HEADER)
  out[0] = FRAME_THIN
  out[1] = flags
  out.writeUInt32BE(id, 2)
  out.writeUInt32BE(count, 6)
  return out
}

/** The one frame saying the server does not hold the image. */
export function encodeThinAbsent (id: number): Uint8Array {
  return header(id, FLAG_LAST | FLAG_ABSENT, 0)
}

/** Thin-manifest frames of an image's slots (each slot: its page CID, or none for a zero page). */
export async function * encodeThinFrames (id: number, slots: AsyncIterable<{ cid?: CID | null }>, level: number): AsyncGenerator<Uint8Array> {
  let body = Buffer.alloc(THIN_FRAME_ENTRIES * THIN_ENTRY_BYTES)
  let count = 0
  let run = 0
  const frame = async (last: boolean): Promise<Uint8Array> => {
    const plain = body.subarray(0, count * THIN_ENTRY_BYTES)
    const z = zstdCompressSync(plain, { params: { [zlibConstants.ZSTD_c_compressionLevel]: level } })
    const zstd = z.byteLength < plain.byteLength
    const out = Buffer.concat([header(id, (last ? FLAG_LAST : 0) | (zstd ? FLAG_ZSTD : 0), count), zstd ? z : plain])
    body = Buffer.alloc(THIN_FRAME_ENTRIES * THIN_ENTRY_BYTES)
    count = 0
    return out
  }
  const endRun = (): void => {
    body[count * THIN_ENTRY_BYTES] = THIN_ZERO_RUN
    body.writeUInt32BE(run, count * THIN_ENTRY_BYTES + 1)
    count++
    run = 0
  }
  for await (const slot of slots) {
    if (count === THIN_FRAME_ENTRIES) yield await frame(false)
    if (slot.cid == null) {
      run++
      if (run === 0xffffffff) endRun()
      continue
    }
    if (run > 0) {
      endRun()
      if (count === THIN_FRAME_ENTRIES) yield await frame(false)
    }
    const at = count * THIN_ENTRY_BYTES
    body[at] = THIN_PAGE
    body.set(slot.cid.multihash.digest.subarray(0, PREFIX_BYTES), at + 1)
    count++
  }
  if (run > 0) {
    if (count === THIN_FRAME_ENTRIES) yield await frame(false)
    endRun()
  }
  yield await frame(true)
}

/** One thin-manifest frame, its entries checked. Throws InvalidMessageError. */
export function decodeThinFrame (data: Uint8Array | Uint8ArrayList): ThinFrame {
  const bytes = data instanceof Uint8Array ? data : data.subarray()
  if (bytes.byteLength < HEADER || bytes[0] !== FRAME_THIN || (bytes[1] & ~(FLAG_LAST | FLAG_ZSTD | FLAG_ABSENT)) !== 0) {
    throw new InvalidMessageError('not a thin-manifest frame')
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const flags = bytes[1]
  const id = view.getUint32(2)
  const count = view.getUint32(6)
  const absent = (flags & FLAG_ABSENT) !== 0
  if (count > THIN_FRAME_ENTRIES || (absent && (count > 0 || (flags & FLAG_LAST) === 0))) {
    throw new InvalidMessageError(`thin-manifest frame holds ${count} entries`)
  }
  let entries = bytes.subarray(HEADER)
  if ((flags & FLAG_ZSTD) !== 0) {
    try {
      entries = zstdDecompressSync(entries, { maxOutputLength: Math.max(1, count * THIN_ENTRY_BYTES) })
    } catch (err: any) {
      throw new InvalidMessageError(`thin-manifest frame does not decompress within its entries: ${err.message}`)
    }
  }
  if (entries.byteLength !== count * THIN_ENTRY_BYTES) {
    throw new InvalidMessageError(`thin-manifest frame has ${entries.byteLength} bytes of entries for ${count}`)
  }
  for (let at = 0; at < entries.byteLength; at += THIN_ENTRY_BYTES) {
    const kind = entries[at]
    if (kind === THIN_ZERO_RUN) {
      if (new DataView(entries.buffer, entries.byteOffset + at + 1, 8).getUint32(0) === 0 || entries[at + 5] + entries[at + 6] + entries[at + 7] + entries[at + 8] !== 0) {
        throw new InvalidMessageError('thin-manifest zero run is empty or has trailing bytes')
      }
    } else if (kind !== THIN_PAGE) {
      throw new InvalidMessageError(`thin-manifest entry of unknown kind ${kind}`)
    }
  }
  return { id, last: (flags & FLAG_LAST) !== 0, absent, entries, count }
}

/** Length of the zero run of entry `i`. */
export function zeroRunLength (thin: ThinManifest, i: number): number {
  return new DataView(thin.entries.buffer, thin.entries.byteOffset + i * THIN_ENTRY_BYTES + 1, 4).getUint32(0)
}
