/**
 * Held frame (server → client), the answer to a prefix request with `held: true`: which of the
 * request's prefixes the server holds a page for, as a bitmap, without the pages. A puller asks
 * its site peers this first, so it knows at once what only the source has and can stream that
 * across the WAN while the site's pages travel in parallel (a plain prefix request tells what
 * a peer lacks only as its answer streams past those entries).
 *
 * ```
 * 0      u8   type = 0x04 (held)
 * 1      u8   flags = 0x01 (always the last and only frame of its request)
 * 2      u32  id of the request
 * 6      u32  count of prefixes in the request
 * 10     ceil(count / 8) bytes: bit i (LSB first in byte i / 8) set = prefix i is held
 * ```
 * A frame must be consumed exactly; bits past `count` are zero.
 */
import { InvalidMessageError } from '../errors.ts'
import { DEFAULT_MAX_CIDS_PER_REQUEST } from '../constants.ts'
import { FLAG_LAST, FRAME_HELD, flat } from './frame.ts'
import type { Uint8ArrayList } from 'uint8arraylist'

export const HELD_FRAME_HEADER = 10

export interface HeldResponse {
  id: number
  count: number
  /** Bit i set = prefix i held. */
  bits: Uint8Array
}

export function encodeHeldResponse (res: HeldResponse): Uint8Array {
  const bytes = Math.ceil(res.count / 8)
  if (res.bits.byteLength < bytes) throw new TypeError(`bitmap of ${res.bits.byteLength} bytes for ${res.count} prefixes`)
  const frame = Buffer.alloc(HELD_FRAME_HEADER + bytes)
  frame[0] = FRAME_HELD
  frame[1] = FLAG_LAST
  frame.writeUInt32BE(res.id, 2)
  frame.writeUInt32BE(res.count, 6)
  frame.set(res.bits.subarray(0, bytes), HELD_FRAME_HEADER)
  return frame
}

/** Whether a response frame is a held frame (by its type byte). */
export function isHeldFrame (data: Uint8Array | Uint8ArrayList): boolean {
  return data.byteLength > 0 && (data instanceof Uint8Array ? data[0] : data.get(0)) === FRAME_HELD
}

/** Decode and validate a held frame. Throws InvalidMessageError. */
export function decodeHeldResponse (data: Uint8Array | Uint8ArrayList, maxEntries = DEFAULT_MAX_CIDS_PER_REQUEST): HeldResponse {
  const f = flat(data)
  if (f.byteLength < HELD_FRAME_HEADER || f[0] !== FRAME_HELD) {
    throw new InvalidMessageError('not a held frame')
  }
  if (f[1] !== FLAG_LAST) {
    throw new InvalidMessageError(`held frame flags ${f[1]} (must be ${FLAG_LAST})`)
  }
  const view = new DataView(f.buffer, f.byteOffset, f.byteLength)
  const id = view.getUint32(2)
  const count = view.getUint32(6)
  if (count === 0 || count > maxEntries) {
    throw new InvalidMessageError(`held frame for ${count} prefixes (1…${maxEntries})`)
  }
  const bytes = Math.ceil(count / 8)
  if (f.byteLength !== HELD_FRAME_HEADER + bytes) {
    throw new InvalidMessageError(`held frame of ${f.byteLength} bytes for ${count} prefixes`)
  }
  const bits = f.subarray(HELD_FRAME_HEADER)
  if (count % 8 !== 0 && (bits[bytes - 1] >> (count % 8)) !== 0) {
    throw new InvalidMessageError('held frame sets bits past its count')
  }
  return { id, count, bits }
}
