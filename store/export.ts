/**
 * Exporting an image: the output is created at its full length (sparse) and only non-zero
 * pages are written, so zero pages stay holes. The main thread looks each batch up and plans
 * it; a hash worker reads the pack ranges (coalesced), verifies every page against its CID and
 * writes the batch's runs, and batches run concurrently (each writes its own offsets).
 *
 * The file appears under its name only when complete and durable: written as `<out>.tmp`,
 * fdatasync'd (datasyncs start in the background every {@link EARLY_SYNC_BYTES} written, so
 * writeback overlaps the export instead of all happening at the end), renamed into place, and
 * the directory fsync'd so the name is durable too.
 */
import { randomBytes } from 'node:crypto'
import { open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import { InputFileError, PageNotFoundError, PageVerificationError } from './errors.ts'
import { INLINE_EXPORT_BATCH } from './options.ts'
import { packName } from './pack.ts'
import { MOVED_CODES } from './page-index.ts'
import type { ExportContext } from './internal.ts'
import type { ExportOptions } from './index.ts'
import { digestToCid, sha256Digest } from './page.ts'
import type { FileHandle } from 'node:fs/promises'
import type { ExportPlan } from './page-jobs.js'

const log = logger('memfabric:store:export')

/** Most buffers handed to one writev (IOV_MAX on Linux). */
const MAX_IOV = 1024

/** Up to `exportBatch` non-zero slots of the image, in image order. */
interface Batch {
  count: number
  /** Digest of slot i at i * 32. */
  digests: Uint8Array
  offsets: Float64Array
  lengths: Uint32Array
}

function newBatch (size: number): Batch {
  return { count: 0, digests: new Uint8Array(size * 32), offsets: new Float64Array(size), lengths: new Uint32Array(size) }
}

/** The distinct pages of a batch (a page may fill several slots), each by its first slot. */
interface Distinct {
  count: number
  /** Distinct page of each slot. */
  of: Uint32Array
  /** First slot of each distinct page. */
  first: Uint32Array
  /** Where each distinct page was read from (set by the plan) and its slot in the batch buffer. */
  packs: Uint32Array
  packOffsets: Float64Array
  pos: Int32Array
}

const SEED = randomBytes(4).readUInt32LE(0)

/** Distinct pages of a batch, found with a small open-addressing table over the digests. */
function dedupe (b: Batch): Distinct {
  let size = 16
  while (size < 2 * b.count) size *= 2
  const mask = size - 1
  const head = new Int32Array(size).fill(-1)
  const of = new Uint32Array(b.count)
  const first = new Uint32Array(b.count)
  const bytes = Buffer.from(b.digests.buffer, b.digests.byteOffset, b.digests.byteLength)
  let count = 0
  for (let i = 0; i < b.count; i++) {
    const a = i * 32
    // seeded, so a manifest cannot line its pages up on one run of slots
    let h = (Math.imul(bytes.readUInt32LE(a) ^ SEED, 0x9e3779b1) ^ bytes.readUInt32LE(a + 4)) & mask
    while (true) {
      const k = head[h]
      if (k < 0) {
        head[h] = count
        first[count] = i
        of[i] = count++
        break
      }
      const f = first[k] * 32
      if (bytes.compare(bytes, f, f + 32, a, a + 32) === 0) {
        of[i] = k
        break
      }
      h = (h + 1) & mask
    }
  }
  return { count, of, first: first.subarray(0, count), packs: new Uint32Array(count), packOffsets: new Float64Array(count), pos: new Int32Array(count) }
}

/** Unused pages a coalesced pack read may run through to reach the next page it needs. */
const MAX_GAP_PAGES = 4

const EMPTY_DIGEST = sha256Digest(new Uint8Array(0))

/** Output bytes written after which a datasync starts in the background. */
const EARLY_SYNC_BYTES = 64 * 1024 * 1024

/** fsync a directory so a rename into it is durable (not supported everywhere: best effort). */
export async function syncDir (dir: string): Promise<void> {
  const d = await open(dir, 'r')
  try {
    await d.sync()
  } catch (err: any) {
    if (!['EINVAL', 'ENOTSUP', 'EISDIR', 'EPERM', 'EBADF'].includes(err.code)) throw err
  } finally {
    await d.close()
  }
}

export async function exportImage (store: ExportContext, ref: string | CID, outPath: string, options: ExportOptions = {}): Promise<void> {
  const root = await store.refs.resolve(ref, options)
  const manifest = await store.manifests.read(root, options)
  const ps = manifest.pageSize
  const tmp = `${outPath}.tmp`
  let fh: FileHandle
  try {
    fh = await open(tmp, 'w')
  } catch (err: any) {
    throw new InputFileError(`cannot write ${outPath}: ${err.code === 'ENOENT' ? 'no such directory' : err.message}`, { cause: err })
  }
  let done = 0
  const total = manifest.size
  const progress = (n: number): void => {
    done += n
    options.onProgress?.({ done, total })
  }

  /** Reader fd of each pack, opened once per export (the store caches the handles). */
  const fds = new Map<number, Promise<number>>()
  const packFd = async (id: number): Promise<number> => {
    let p = fds.get(id)
    if (p == null) {
      p = store.packs.reader(id).then(h => h.fd)
      fds.set(id, p)
      p.catch(() => { fds.delete(id) })
    }
    return p
  }

  /**
   * Look the batch's pages up and plan it: pack reads sorted by location and coalesced
   * across small gaps (gap slots are read but not used), the digest expected in every slot,
   * and one writev per run of adjacent image pages. Everything per page is in typed arrays:
   * a batch stays in flight while a worker runs it, and objects per page would live long
   * enough to be promoted to the old generation (that was most of a daemon's heap growth
   * during an export).
   */
  const plan = async (b: Batch, d: Distinct, cap: number): Promise<ExportPlan> => {
    const nd = d.count
    const at = new Array<number>(nd)
    for (let k = 0; k < nd; k++) at[k] = d.first[k] * 32
    const locs = await store.pages.locate(b.digests, at)
    const packs = d.packs
    const offsets = d.packOffsets
    for (let k = 0; k < nd; k++) {
      const loc = locs[k]
      if (loc == null) {
        const i = d.first[k]
        throw new PageNotFoundError(`page ${digestToCid(b.digests.slice(i * 32, i * 32 + 32)).toString()} (image offset ${b.offsets[i]}) of image ${root.toString()} is not in the store`)
      }
      packs[k] = loc.pack
      offsets[k] = loc.offset
    }
    const order = new Uint32Array(nd)
    for (let k = 0; k < nd; k++) order[k] = k
    order.sort((x, y) => packs[x] - packs[y] || offsets[x] - offsets[y])
    const reads: number[] = []
    let pos = 0
    let spare = cap - nd
    for (let j = 0; j < nd; j++) {
      const k = order[j]
      const len = b.lengths[d.first[k]]
      if (j > 0) {
        const p = order[j - 1]
        const gap = offsets[k] - offsets[p] - ps
        if (packs[k] === packs[p] && b.lengths[d.first[p]] === ps && gap >= 0 && gap % ps === 0 && gap <= MAX_GAP_PAGES * ps && gap / ps <= spare) {
          spare -= gap / ps
          pos += gap / ps
          const r = reads.length - 4
          reads[r + 2] = offsets[k] + len - reads[r + 1]
          d.pos[k] = pos++
          continue
        }
      }
      reads.push(await packFd(packs[k]), offsets[k], len, pos * ps)
      d.pos[k] = pos++
    }
    const lengths = new Uint32Array(pos)
    const want = new Uint8Array(pos * 32)
    for (let i = 0; i < pos; i++) want.set(EMPTY_DIGEST, i * 32)
    for (let k = 0; k < nd; k++) {
      const i = d.first[k]
      lengths[d.pos[k]] = b.lengths[i]
      want.set(b.digests.subarray(i * 32, i * 32 + 32), d.pos[k] * 32)
    }
    const writes: number[] = []
    for (let i = 0; i < b.count;) {
      const start = b.offsets[i]
      const head = writes.length
      writes.push(start, 0)
      let end = start
      let j = i
      while (j < b.count && b.offsets[j] === end && j - i < MAX_IOV) {
        writes.push(d.pos[d.of[j]] * ps, b.lengths[j])
        end += b.lengths[j]
        j++
      }
      writes[head + 1] = j - i
      i = j
    }
    return { reads: Float64Array.from(reads), lengths, want, fd: fh.fd, writes: Float64Array.from(writes) }
  }

  const runBatch = async (b: Batch): Promise<void> => {
    const d = dedupe(b)
    // room for the gap slots of coalesced reads (they rarely need many); one size per export
    // so buffers are reused
    const cap = Math.max(d.count, size) + Math.ceil(size / 4)
    const shared = store.hasher.acquire(cap * ps, ps)
    try {
      for (let attempt = 0; ; attempt++) {
        const res = await store.hasher.exportBatch(shared, ps, await plan(b, d, cap), inline)
        if (res.error != null) {
          const err = Object.assign(new Error(res.error.message), { code: res.error.code })
          // gc may have moved pages to a new pack meanwhile: look them up again
          if (res.error.write === true || attempt >= 2 || !MOVED_CODES.includes(res.error.code)) throw err
          fds.clear()
          continue
        }
        if (res.mismatch != null) {
          const k = d.pos.indexOf(res.mismatch)
          const i = d.first[k]
          const digest = b.digests.slice(i * 32, i * 32 + 32)
          // a page gc moved (its old pack's descriptor since reused) reads wrong: retry if it moved
          const [now] = await store.pages.lookup([digest])
          if (attempt < 2 && now != null && (now.pack !== d.packs[k] || now.offset !== d.packOffsets[k])) {
            fds.clear()
            continue
          }
          throw new PageVerificationError(`page ${digestToCid(digest).toString()} at image offset ${b.offsets[i]} failed verification (read from ${packName(d.packs[k])} at ${d.packOffsets[k]})`)
        }
        break
      }
    } finally {
      store.hasher.release(shared)
    }
    let bytes = 0
    for (let i = 0; i < b.count; i++) bytes += b.lengths[i]
    progress(bytes)
    unsynced += bytes
    if (unsynced >= EARLY_SYNC_BYTES && early == null) {
      unsynced = 0
      early = fh.datasync().catch(err => { failure ??= err }).finally(() => { early = undefined })
    }
  }

  let unsynced = 0
  let early: Promise<void> | undefined
  const inline = !store.options.exportWorkers
  const size = inline ? INLINE_EXPORT_BATCH : store.options.exportBatch

  const pool = new Set<Promise<void>>()
  let failure: unknown
  const launch = async (b: Batch): Promise<void> => {
    while (pool.size >= (inline ? 1 : store.options.exportConcurrency)) await Promise.race(pool)
    if (failure != null) throw failure
    const p: Promise<void> = runBatch(b).catch(err => { failure ??= err }).finally(() => { pool.delete(p) })
    pool.add(p)
  }

  let usingTable = false
  try {
    usingTable = true
    await store.tables.use(manifest.pages)
    await fh.truncate(total)
    let batch = newBatch(size)
    for await (const c of store.manifests.slotArrays(root, options)) {
      for (let i = 0; i < c.count; i++) {
        if (c.zero[i] === 1) {
          progress(c.lengths[i])
          continue
        }
        const n = batch.count++
        batch.digests.set(c.digests.subarray(i * 32, i * 32 + 32), n * 32)
        batch.offsets[n] = c.offsets[i]
        batch.lengths[n] = c.lengths[i]
        if (batch.count >= size) {
          options.signal?.throwIfAborted()
          await launch(batch)
          batch = newBatch(size)
        }
      }
    }
    if (batch.count > 0) await launch(batch)
    await Promise.all(pool)
    if (failure != null) throw failure
    await early
    if (failure != null) throw failure
    await fh.datasync()
    await fh.close()
    await rename(tmp, outPath)
    await syncDir(dirname(outPath))
    log('exported %s to %s', root.toString(), outPath)
  } catch (err) {
    await Promise.allSettled(pool)
    await early
    await fh.close().catch(() => {})
    await unlink(tmp).catch(() => {})
    throw err
  } finally {
    if (usingTable) store.tables.release()
  }
}
