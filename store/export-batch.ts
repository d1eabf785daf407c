/**
 * One export batch done where the pages are hashed (a hash worker, or inline): read the
 * planned pack ranges into a shared buffer, hash every slot, compare against the expected
 * digests, and only then write the runs of the output. Done with synchronous calls on that
 * thread: tens of thousands of small reads and writes each handed to the libuv pool cost
 * more CPU than the copies they do (measured here).
 */
import { readSync, writevSync } from 'node:fs'
import { hashPagesInto } from './hash-pages.ts'
import type { HashOutput } from './hash-pages.ts'

/** The plan of a batch; every array is a copy owned by the job. */
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

/** Run a planned batch on `data` (page slots of `pageSize`), hashing into `out`. */
export function runExportBatch (data: Uint8Array, out: HashOutput, pageSize: number, plan: ExportPlan): ExportBatchResult {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  const r = plan.reads
  try {
    for (let i = 0; i < r.length; i += 4) {
      const fd = r[i]
      const pos = r[i + 1]
      const len = r[i + 2]
      const at = r[i + 3]
      let done = 0
      while (done < len) {
        const n = readSync(fd, bytes, at + done, len - done, pos + done)
        if (n === 0) return { error: { code: 'ERR_SHORT_PACK', message: `pack ends before byte ${pos + len}` } }
        done += n
      }
    }
  } catch (err: any) {
    return { error: { code: String(err.code ?? 'EIO'), message: String(err.message) } }
  }
  const slots = plan.lengths.length
  hashPagesInto(data, slots * pageSize, pageSize, out, plan.lengths)
  const got = Buffer.from(out.digests.buffer, out.digests.byteOffset, slots * 32)
  const want = Buffer.from(plan.want.buffer, plan.want.byteOffset, slots * 32)
  if (!got.equals(want)) {
    for (let i = 0; i < slots; i++) {
      if (got.compare(want, i * 32, i * 32 + 32, i * 32, i * 32 + 32) !== 0) return { mismatch: i }
    }
  }
  try {
    writeRuns(bytes, plan)
  } catch (err: any) {
    return { error: { code: String(err.code ?? 'EIO'), message: String(err.message), write: true } }
  }
  return {}
}

function writeRuns (bytes: Buffer, plan: ExportPlan): void {
  const w = plan.writes
  for (let i = 0; i < w.length;) {
    const pos = w[i]
    const n = w[i + 1]
    const bufs: Buffer[] = new Array(n)
    let total = 0
    for (let k = 0; k < n; k++) {
      const at = w[i + 2 + 2 * k]
      const len = w[i + 3 + 2 * k]
      bufs[k] = bytes.subarray(at, at + len)
      total += len
    }
    i += 2 + 2 * n
    let done = writevSync(plan.fd, bufs, pos)
    if (done < total) {
      // a short writev: finish buffer by buffer
      let skip = done
      let p = pos
      for (const b of bufs) {
        let off = Math.min(skip, b.byteLength)
        skip -= off
        while (off < b.byteLength) {
          const k = writevSync(plan.fd, [b.subarray(off)], p + off)
          off += k
          done += k
        }
        p += b.byteLength
      }
    }
  }
}
