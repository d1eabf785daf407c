/**
 * What every frame of the page protocol shares: the type byte that opens a binary frame, the
 * flag bits, and the checks of integers and flat bytes.
 */
import type { Uint8ArrayList } from 'uint8arraylist'

/** Type byte of a response frame (its first byte). */
export const FRAME_PAGES = 0x01
export const FRAME_PATCH = 0x02
export const FRAME_THIN = 0x03
export const FRAME_HELD = 0x04

/** Flag bits of a response frame (its second byte). */
export const FLAG_LAST = 0x01
export const FLAG_ZSTD = 0x02

/** Bytes of a page's sha2-256 digest. */
export const DIGEST_BYTES = 32

const MAX_U32 = 0xffffffff

/** One flat buffer of a frame (a chunk list is copied once). */
export function flat (data: Uint8Array | Uint8ArrayList): Uint8Array {
  return data instanceof Uint8Array ? data : data.subarray()
}

export function isU32 (n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_U32
}
