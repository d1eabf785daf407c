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
import { open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import { InputFileError, PageNotFoundError, PageVerificationError } from './errors.ts'
import { packName } from './pack.ts'
import type { PageLocation } from './pack.ts'
import { digestKey } from './store.ts'
import type { LevelPackStore, Slot } from './store.ts'
import type { ExportOptions } from './index.ts'
import { digestToCid, sha256Digest } from './page.ts'
import type { FileHandle } from 'node:fs/promises'
import type { ExportPlan } from './export-batch.ts'

const log = logger('memfabric:store:export')

/** Most buffers handed to one writev (IOV_MAX on Linux). */
const MAX_IOV = 1024

interface Distinct {
  digest: Uint8Array
  /** The digest as a latin1 string (the store's key). */
  key: string
  offset: number
  length: number
  loc?: PageLocation
  /** Slot in the batch buffer. */
  pos: number
}

const RETRY_CODES = ['ENOENT', 'EBADF', 'ERR_SHORT_PACK']

/** Unused pages a coalesced pack read may run through to reach the next page it needs. */
const MAX_GAP_PAGES = 4

const EMPTY_DIGEST = sha256Digest(new Uint8Array(0))

/** Output bytes written after which a datasync starts in the background. */
const EARLY_SYNC_BYTES = 64 * 1024 * 1024

/** fsync a directory so a rename into it is durable (not supported everywhere: best effort). */
async function syncDir (dir: string): Promise<void> {
  const d = await open(dir, 'r')
  try {
    await d.sync()
  } catch (err: any) {
    if (!['EINVAL', 'ENOTSUP', 'EISDIR', 'EPERM', 'EBADF'].includes(err.code)) throw err
  } finally {
    await d.close()
  }
}

export async function exportImage (store: LevelPackStore, ref: string | CID, outPath: string, options: ExportOptions = {}): Promise<void> {
  const root = await store.resolve(ref, options)
  const manifest = await store.readManifest(root, options)
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
   * and one writev per run of adjacent image pages.
   */
  const plan = async (slots: Slot[], slotOf: Distinct[], distinct: Distinct[], cap: number): Promise<ExportPlan> => {
    const locs = await store.lookup(distinct.map(d => d.digest))
    for (let i = 0; i < distinct.length; i++) {
      const loc = locs[i]
      const d = distinct[i]
      if (loc == null) throw new PageNotFoundError(`page ${digestToCid(d.digest).toString()} (image offset ${d.offset}) of image ${root.toString()} is not in the store`)
      d.loc = loc
    }
    const order = distinct.slice().sort((a, b) => (a.loc as PageLocation).pack - (b.loc as PageLocation).pack || (a.loc as PageLocation).offset - (b.loc as PageLocation).offset)
    const reads: number[] = []
    let pos = 0
    let spare = cap - order.length
    for (let j = 0; j < order.length; j++) {
      const d = order[j]
      const loc = d.loc as PageLocation
      if (j > 0) {
        const prev = order[j - 1].loc as PageLocation
        const gap = loc.offset - prev.offset - ps
        if (loc.pack === prev.pack && prev.length === ps && gap >= 0 && gap % ps === 0 && gap <= MAX_GAP_PAGES * ps && gap / ps <= spare) {
          spare -= gap / ps
          pos += gap / ps
          const r = reads.length - 4
          reads[r + 2] = loc.offset + loc.length - reads[r + 1]
          d.pos = pos++
          continue
        }
      }
      reads.push(await packFd(loc.pack), loc.offset, loc.length, pos * ps)
      d.pos = pos++
    }
    const lengths = new Uint32Array(pos)
    const want = new Uint8Array(pos * 32)
    for (let i = 0; i < pos; i++) want.set(EMPTY_DIGEST, i * 32)
    for (const d of distinct) {
      lengths[d.pos] = d.length
      want.set(d.digest, d.pos * 32)
    }
    const writes: number[] = []
    for (let i = 0; i < slots.length;) {
      const start = slots[i].offset
      const head = writes.length
      writes.push(start, 0)
      let end = start
      let j = i
      while (j < slots.length && slots[j].offset === end && j - i < MAX_IOV) {
        writes.push(slotOf[j].pos * ps, slots[j].length)
        end += slots[j].length
        j++
      }
      writes[head + 1] = j - i
      i = j
    }
    return { reads: Float64Array.from(reads), lengths, want, fd: fh.fd, writes: Float64Array.from(writes) }
  }

  const runBatch = async (slots: Slot[]): Promise<void> => {
    const byKey = new Map<string, Distinct>()
    const distinct: Distinct[] = []
    const slotOf: Distinct[] = []
    for (const s of slots) {
      const digest = s.digest as Uint8Array
      const k = digestKey(digest)
      let d = byKey.get(k)
      if (d == null) {
        d = { digest, key: k, offset: s.offset, length: s.length, pos: 0 }
        byKey.set(k, d)
        distinct.push(d)
      }
      slotOf.push(d)
    }
    // room for the gap slots of coalesced reads; one size per export so buffers are reused
    const cap = 2 * Math.max(distinct.length, store.options.exportBatch)
    const shared = store.hasher.acquire(cap * ps, ps)
    try {
      for (let attempt = 0; ; attempt++) {
        const res = await store.hasher.exportBatch(shared, ps, await plan(slots, slotOf, distinct, cap))
        if (res.error != null) {
          const err = Object.assign(new Error(res.error.message), { code: res.error.code })
          // gc may have moved pages to a new pack meanwhile: look them up again
          if (res.error.write === true || attempt >= 2 || !RETRY_CODES.includes(res.error.code)) throw err
          fds.clear()
          continue
        }
        if (res.mismatch != null) {
          const d = distinct.find(x => x.pos === res.mismatch) as Distinct
          const loc = d.loc as PageLocation
          // a page gc moved (its old pack's descriptor since reused) reads wrong: retry if it moved
          const [now] = await store.lookupKeys([d.key])
          if (attempt < 2 && now != null && (now.pack !== loc.pack || now.offset !== loc.offset)) {
            fds.clear()
            continue
          }
          throw new PageVerificationError(`page ${digestToCid(d.digest).toString()} at image offset ${d.offset} failed verification (read from ${packName(loc.pack)} at ${loc.offset})`)
        }
        break
      }
    } finally {
      store.hasher.release(shared)
    }
    let bytes = 0
    for (const s of slots) bytes += s.length
    progress(bytes)
    unsynced += bytes
    if (unsynced >= EARLY_SYNC_BYTES && early == null) {
      unsynced = 0
      early = fh.datasync().catch(err => { failure ??= err }).finally(() => { early = undefined })
    }
  }

  let unsynced = 0
  let early: Promise<void> | undefined

  const pool = new Set<Promise<void>>()
  let failure: unknown
  const launch = async (slots: Slot[]): Promise<void> => {
    while (pool.size >= store.options.exportConcurrency) await Promise.race(pool)
    if (failure != null) throw failure
    const p: Promise<void> = runBatch(slots).catch(err => { failure ??= err }).finally(() => { pool.delete(p) })
    pool.add(p)
  }

  let usingTable = false
  try {
    usingTable = true
    await store.useTable(manifest.pages)
    await fh.truncate(total)
    let batch: Slot[] = []
    for await (const slots of store.slotChunks(root, options)) {
      for (const s of slots) {
        if (s.digest == null) {
          progress(s.length)
          continue
        }
        batch.push(s)
        if (batch.length >= store.options.exportBatch) {
          options.signal?.throwIfAborted()
          await launch(batch)
          batch = []
        }
      }
    }
    if (batch.length > 0) await launch(batch)
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
    if (usingTable) store.releaseTable()
  }
}
