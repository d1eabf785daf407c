/**
 * Hashing a buffer of pages: slot i starts at i * pageSize and is `lengths[i]` long (or a full
 * page, the last one possibly shorter). Shared by the worker threads and the inline path.
 */
import { hash } from 'node:crypto'
import type { ExportBatchResult, ExportPlan } from './export-batch.ts'

/** Digest and zero flag outputs: 32 bytes and one byte per slot. */
export interface HashOutput {
  digests: Uint8Array
  zero: Uint8Array
}

const zeroDigests = new Map<number, Uint8Array>()

/** SHA-256 of `len` zero bytes, computed once per length. */
function zeroDigest (len: number): Uint8Array {
  let d = zeroDigests.get(len)
  if (d == null) {
    d = hash('sha256', Buffer.alloc(len), 'buffer') as unknown as Uint8Array
    zeroDigests.set(len, d)
  }
  return d
}

/** Hash the slots of `data[0, length)` into `out`; returns the number of slots. */
export function hashPagesInto (data: Uint8Array, length: number, pageSize: number, out: HashOutput, lengths?: Uint32Array): number {
  const slots = lengths?.length ?? Math.ceil(length / pageSize)
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  const zeroPage = Buffer.alloc(pageSize)
  for (let i = 0; i < slots; i++) {
    const start = i * pageSize
    const len = lengths?.[i] ?? Math.min(pageSize, length - start)
    const page = bytes.subarray(start, start + len)
    if (len === pageSize ? page.equals(zeroPage) : page.equals(zeroPage.subarray(0, len))) {
      out.zero[i] = 1
      // the digest too, so a verifier comparing digests never sees a stale slot
      out.digests.set(zeroDigest(len), i * 32)
      continue
    }
    out.zero[i] = 0
    out.digests.set(hash('sha256', page, 'buffer') as unknown as Uint8Array, i * 32)
  }
  return slots
}

/** Messages to a hash worker. */
export type WorkerRequest =
  | { type: 'register', id: number, data: SharedArrayBuffer, digests: SharedArrayBuffer, zero: SharedArrayBuffer }
  | { type: 'hash', req: number, id: number, length: number, pageSize: number, lengths?: Uint32Array }
  | { type: 'export', req: number, id: number, pageSize: number, plan: ExportPlan }

export interface WorkerResponse {
  req: number
  slots: number
  /** The outcome of an `export` job. */
  result?: ExportBatchResult
}
