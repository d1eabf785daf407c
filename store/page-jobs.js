/**
 * The page jobs a hash worker runs (and the hasher runs inline when it has no workers):
 * hashing a buffer of pages, and one planned export batch. Plain JavaScript, with its types in
 * page-jobs.d.ts, so that a worker thread loads no TypeScript: Node strips types with a
 * WebAssembly compiler that every isolate loads for itself, ~15 MB of RSS per worker
 * (measured: two workers started from .ts files +60-70 MB, from .js files +32 MB).
 *
 * An export batch is done with synchronous calls on the worker's thread: tens of thousands of
 * small reads and writes each handed to the libuv pool cost more CPU than the copies they do
 * (measured here).
 */
import { hash } from 'node:crypto'
import { readSync, writevSync } from 'node:fs'

/** @type {Map<number, Uint8Array>} */
const zeroDigests = new Map()

/** SHA-256 of `len` zero bytes, computed once per length. @param {number} len */
function zeroDigest (len) {
  let d = zeroDigests.get(len)
  if (d == null) {
    d = /** @type {Uint8Array} */ (/** @type {unknown} */ (hash('sha256', Buffer.alloc(len), 'buffer')))
    zeroDigests.set(len, d)
  }
  return d
}

/** See page-jobs.d.ts. */
export function hashPagesInto (data, length, pageSize, out, lengths) {
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
    out.digests.set(hash('sha256', page, 'buffer'), i * 32)
  }
  return slots
}

/** See page-jobs.d.ts. */
export function runExportBatch (data, out, pageSize, plan) {
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
  } catch (err) {
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
  } catch (err) {
    return { error: { code: String(err.code ?? 'EIO'), message: String(err.message), write: true } }
  }
  return {}
}

/** Write the batch's runs of adjacent image pages, one writev each. @param {Buffer} bytes @param {import('./page-jobs.d.ts').ExportPlan} plan */
function writeRuns (bytes, plan) {
  const w = plan.writes
  for (let i = 0; i < w.length;) {
    const pos = w[i]
    const n = w[i + 1]
    /** @type {Buffer[]} */
    const bufs = new Array(n)
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
