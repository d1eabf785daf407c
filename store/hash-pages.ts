/**
 * Hashing a buffer of pages: slot i starts at i * pageSize and is `lengths[i]` long (or a full
 * page, the last one possibly shorter). Shared by the worker threads and the inline path.
 */
import { hash } from 'node:crypto'

export interface HashRequest {
  id: number
  buffer: ArrayBuffer
  /** Bytes of `buffer` in use. */
  length: number
  pageSize: number
  /** Per-slot lengths when slots are not all full pages. */
  lengths?: Uint32Array
}

export interface HashResponse {
  id: number
  buffer: ArrayBuffer
  /** 32 bytes per slot. */
  digests: Uint8Array
  /** 1 for an all-zero slot (its digest is left zero). */
  zero: Uint8Array
}

export function hashPageBuffer (req: HashRequest): HashResponse {
  const { buffer, length, pageSize, lengths } = req
  const slots = lengths?.length ?? Math.ceil(length / pageSize)
  const digests = new Uint8Array(slots * 32)
  const zero = new Uint8Array(slots)
  const bytes = Buffer.from(buffer, 0, Math.max(length, lengths == null ? 0 : slots * pageSize))
  const zeroPage = Buffer.alloc(pageSize)
  for (let i = 0; i < slots; i++) {
    const start = i * pageSize
    const len = lengths?.[i] ?? Math.min(pageSize, length - start)
    const page = bytes.subarray(start, start + len)
    if (len === pageSize ? page.equals(zeroPage) : page.equals(zeroPage.subarray(0, len))) {
      zero[i] = 1
      continue
    }
    digests.set(hash('sha256', page, 'buffer') as unknown as Uint8Array, i * 32)
  }
  return { id: req.id, buffer, digests, zero }
}
