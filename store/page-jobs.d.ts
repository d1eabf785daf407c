/** Types of page-jobs.js (plain JavaScript so that hash workers load no TypeScript). */

/** Digest and zero flag outputs: 32 bytes and one byte per slot. */
export interface HashOutput {
  digests: Uint8Array
  zero: Uint8Array
}

/** The plan of an export batch; every array is a copy owned by the job. */
export interface ExportPlan {
  /** Reads as [fd, file offset, length, buffer offset] quadruples. */
  reads: Float64Array
  /** Slot lengths (0 for a slot that only fills a gap between coalesced reads). */
  lengths: Uint32Array
  /** Expected digest of every slot (a gap slot expects the digest of no bytes). */
  want: Uint8Array
  /** Output file descriptor. */
  fd: number
  /** Writes as [file position, n, then n × (buffer offset, length)] records. */
  writes: Float64Array
}

export interface ExportBatchResult {
  /** Set when a read (or, with `write`, a write) failed: the code (ERR_SHORT_PACK for a pack cut short) and message. */
  error?: { code: string, message: string, write?: boolean }
  /** Set when slot `mismatch` hashed to another digest than expected; nothing was written. */
  mismatch?: number
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

/**
 * Hash the slots of `data[0, length)` into `out`; returns the number of slots. Slot i starts at
 * i * pageSize and is `lengths[i]` long (or a full page, the last one possibly shorter).
 */
export function hashPagesInto (data: Uint8Array, length: number, pageSize: number, out: HashOutput, lengths?: Uint32Array): number

/**
 * Run a planned export batch on `data` (page slots of `pageSize`), hashing into `out`: read the
 * planned pack ranges, hash every slot, compare against the expected digests, and only then
 * write the runs of the output.
 */
export function runExportBatch (data: Uint8Array, out: HashOutput, pageSize: number, plan: ExportPlan): ExportBatchResult
