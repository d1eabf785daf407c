/**
 * Exporting an image: the output is created at its full length (sparse) and only non-zero
 * pages are written, so zero pages stay holes. Pages are read from packs in coalesced ranges,
 * verified against their CIDs in worker threads, and written in batches that run concurrently
 * (each batch writes its own offsets). The file appears under its name only when complete.
 */
import { open, rename, unlink } from 'node:fs/promises'
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import { InputFileError, PageNotFoundError, PageVerificationError } from './errors.ts'
import { packName } from './pack.ts'
import type { PageLocation } from './pack.ts'
import { digestKey } from './store.ts'
import type { LevelPackStore, Slot } from './store.ts'
import type { ExportOptions } from './index.ts'
import { digestToCid } from './page.ts'
import type { FileHandle } from 'node:fs/promises'
import type { SharedPages } from './hasher.ts'

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

  const readBatch = async (distinct: Distinct[], buf: Uint8Array): Promise<void> => {
    const locs = await store.lookupKeys(distinct.map(d => d.key))
    for (let i = 0; i < distinct.length; i++) {
      const loc = locs[i]
      const d = distinct[i]
      if (loc == null) throw new PageNotFoundError(`page ${digestToCid(d.digest).toString()} (image offset ${d.offset}) of image ${root.toString()} is not in the store`)
      d.loc = loc
    }
    const order = [...distinct].sort((a, b) => (a.loc as PageLocation).pack - (b.loc as PageLocation).pack || (a.loc as PageLocation).offset - (b.loc as PageLocation).offset)
    const reads: Array<Promise<void>> = []
    for (let j = 0; j < order.length;) {
      const first = order[j]
      first.pos = j
      let k = j + 1
      let length = (first.loc as PageLocation).length
      while (k < order.length) {
        const prev = order[k - 1].loc as PageLocation
        const cur = order[k].loc as PageLocation
        if (cur.pack !== prev.pack || prev.length !== ps || cur.offset !== prev.offset + ps) break
        order[k].pos = k
        length += cur.length
        k++
      }
      const loc = first.loc as PageLocation
      reads.push(store.packs.read(loc.pack, loc.offset, length, buf, j * ps))
      j = k
    }
    await Promise.all(reads)
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
    const shared = store.hasher.acquire(Math.max(distinct.length, store.options.exportBatch) * ps, ps)
    try {
      await verifyAndWrite(slots, slotOf, distinct, shared)
    } finally {
      store.hasher.release(shared)
    }
    let bytes = 0
    for (const s of slots) bytes += s.length
    progress(bytes)
  }

  const verifyAndWrite = async (slots: Slot[], slotOf: Distinct[], distinct: Distinct[], shared: SharedPages): Promise<void> => {
    const buf = shared.bytes
    for (let attempt = 0; ; attempt++) {
      try {
        await readBatch(distinct, buf)
        break
      } catch (err: any) {
        // gc may have moved pages to a new pack meanwhile: look them up again
        if (attempt >= 2 || !RETRY_CODES.includes(err.code)) throw err
      }
    }
    const lengths = new Uint32Array(distinct.length)
    for (const d of distinct) lengths[d.pos] = d.length
    const hashed = await store.hasher.hash(shared, distinct.length * ps, ps, lengths)
    // compare all digests at once; only a mismatch looks page by page
    const want = Buffer.allocUnsafe(distinct.length * 32)
    for (const d of distinct) want.set(d.digest, d.pos * 32)
    const got = Buffer.from(hashed.digests.buffer, hashed.digests.byteOffset, hashed.digests.byteLength)
    if (want.equals(got)) return writeSlots(slots, slotOf, buf)
    for (const d of distinct) {
      if (!got.subarray(d.pos * 32, d.pos * 32 + 32).equals(d.digest)) {
        const loc = d.loc as PageLocation
        throw new PageVerificationError(`page ${digestToCid(d.digest).toString()} at image offset ${d.offset} failed verification (read from ${packName(loc.pack)} at ${loc.offset})`)
      }
    }
    throw new Error('export: digests differ but no page mismatched')
  }

  /** Write runs of adjacent slots with one writev each. */
  const writeSlots = async (slots: Slot[], slotOf: Distinct[], buf: Uint8Array): Promise<void> => {
    const writes: Array<Promise<void>> = []
    for (let i = 0; i < slots.length;) {
      const start = slots[i].offset
      const bufs: Uint8Array[] = []
      let end = start
      let j = i
      while (j < slots.length && slots[j].offset === end && bufs.length < MAX_IOV) {
        const d = slotOf[j]
        bufs.push(buf.subarray(d.pos * ps, d.pos * ps + slots[j].length))
        end += slots[j].length
        j++
      }
      writes.push(writeAll(fh, bufs, start, end - start))
      i = j
    }
    await Promise.all(writes)
  }

  const pool = new Set<Promise<void>>()
  let failure: unknown
  const launch = async (slots: Slot[]): Promise<void> => {
    while (pool.size >= store.options.exportConcurrency) await Promise.race(pool)
    if (failure != null) throw failure
    const p: Promise<void> = runBatch(slots).catch(err => { failure ??= err }).finally(() => { pool.delete(p) })
    pool.add(p)
  }

  try {
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
    await fh.close()
    await rename(tmp, outPath)
    log('exported %s to %s', root.toString(), outPath)
  } catch (err) {
    await Promise.allSettled(pool)
    await fh.close().catch(() => {})
    await unlink(tmp).catch(() => {})
    throw err
  }
}

async function writeAll (fh: FileHandle, bufs: Uint8Array[], position: number, length: number): Promise<void> {
  const { bytesWritten } = await fh.writev(bufs, position)
  if (bytesWritten === length) return
  // a short writev: finish byte-wise from where it stopped
  const all = Buffer.concat(bufs)
  let done = bytesWritten
  while (done < length) {
    const r = await fh.write(all, done, length - done, position + done)
    done += r.bytesWritten
  }
}
