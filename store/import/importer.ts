/**
 * Importing an image: read large chunks ahead, hash them in worker threads, look up which
 * pages are new in one batch per chunk, append the new ones to the pack, and commit the index
 * every few hundred MiB. The import's digests are leased so a concurrent gc keeps them; its
 * name and pin commit last, in one batch with the manifest root.
 */
import { randomBytes } from 'node:crypto'
import { logger } from '@libp2p/logger'
import { InputFileError } from '../errors.ts'
import { Chunker, encodeRoot } from '../manifest.ts'
import type { Block } from '../manifest.ts'
import { PAGE_SIZE } from '../constants.ts'
import { openImage } from './index.ts'
import { validateName } from '../refs.ts'
import type { IndexOp, PinRecord } from '../schema.ts'
import type { ImportContext } from '../internal.ts'
import type { SharedPages } from '../hasher.ts'
import type { ImportOptions, ImportResult } from '../index.ts'

const log = logger('memfabric:store:import')

interface ReadJob {
  offset: number
  length: number
}

export async function importImage (store: ImportContext, path: string, options: ImportOptions = {}): Promise<ImportResult> {
  if (options.name != null) validateName(options.name)
  options.signal?.throwIfAborted()
  const src = await openImage(path)
  const { fh, size, format, extents } = src
  const opts = store.options
  const pageSize = PAGE_SIZE
  const chunkBytes = Math.max(pageSize, Math.floor(opts.readChunk / pageSize) * pageSize)
  const jobs: ReadJob[] = []
  for (const e of extents) {
    for (let at = 0; at < e.length; at += chunkBytes) {
      jobs.push({ offset: e.offset + at, length: Math.min(chunkBytes, e.length - at) })
    }
  }
  const lease = store.leases.take()
  const importId = `${Date.now()}-${process.pid}-${randomBytes(4).toString('hex')}`
  const inflight: Array<Promise<Chunk>> = []
  const chunker = new Chunker({ modulus: opts.chunkModulus, min: opts.chunkMin, max: opts.chunkMax })
  let pages = 0
  let zeroPages = 0
  let newPages = 0
  let done = 0
  let committed = false

  interface Chunk {
    buf: SharedPages
    bytes: Buffer
    digests: Uint8Array
    zero: Uint8Array
  }

  // chunks are read into shared buffers the hash workers already know, and recycled
  const readAndHash = async (job: ReadJob): Promise<Chunk> => {
    const buf = store.hasher.acquire(chunkBytes, pageSize)
    try {
      let got = 0
      while (got < job.length) {
        let bytesRead: number
        try {
          ({ bytesRead } = await fh.read(buf.bytes, got, job.length - got, job.offset + got))
        } catch (err: any) {
          throw new InputFileError(`cannot read ${path} at byte ${job.offset + got}: ${err.message}`, { cause: err })
        }
        if (bytesRead === 0) throw new InputFileError(`${path} shrank while being imported (ends before byte ${job.offset + job.length})`)
        got += bytesRead
      }
      const h = await store.hasher.hash(buf, job.length, pageSize)
      return { buf, bytes: buf.bytes.subarray(0, job.length), digests: h.digests, zero: h.zero }
    } catch (err) {
      store.hasher.release(buf)
      throw err
    }
  }

  const addBlock = (block: Block | undefined): void => {
    if (block == null) return
    const key = block.cid.toString()
    lease.blocks.add(key)
    store.pending.blocks.set(key, block)
  }

  /** Resolves when the chunk's new pages are written (its buffer may then be reused). */
  const storeChunk = async (r: Chunk): Promise<{ written: Promise<void> }> => {
    let written: Promise<void> = Promise.resolve()
    const n = r.zero.length
    const len = r.bytes.byteLength
    await store.lock.run(async () => {
      store.checkOpen()
      // digests stay in the hash output buffer: pages are named by their offset in it
      const fresh: number[] = []
      const zero = r.zero
      const digests = Buffer.from(r.digests.buffer, r.digests.byteOffset, r.digests.byteLength)
      for (let i = 0; i < n; i++) {
        if (zero[i] === 1) continue
        if (!lease.pages.add(digests, i * 32)) continue
        fresh.push(i * 32)
      }
      const locs = await store.pages.locate(digests, fresh)
      const addAt: number[] = []
      const lengths: number[] = []
      // runs of consecutive new pages go to the pack as views of the chunk buffer (one writev)
      const parts: Uint8Array[] = []
      let runStart = -1
      let runEnd = -1
      for (let j = 0; j < fresh.length; j++) {
        if (locs[j] != null) continue
        const i = fresh[j] / 32
        const start = i * pageSize
        const end = Math.min(len, start + pageSize)
        addAt.push(fresh[j])
        lengths.push(end - start)
        if (start !== runEnd) {
          if (runEnd > runStart) parts.push(r.bytes.subarray(runStart, runEnd))
          runStart = start
        }
        runEnd = end
      }
      if (runEnd > runStart) parts.push(r.bytes.subarray(runStart, runEnd))
      if (addAt.length > 0) {
        const appended = await store.pending.append(digests, addAt, parts, lengths)
        written = appended.done
        newPages += addAt.length
      }
      for (let i = 0; i < n; i++) {
        pages++
        if (zero[i] === 1) {
          zeroPages++
          addBlock(chunker.pushZero())
        } else {
          addBlock(chunker.pushDigest(digests, i * 32))
        }
      }
      if (store.pending.bytes >= opts.commitBytes) await store.pending.commit()
    })
    done += len
    options.onProgress?.({ done, total: size })
    return { written }
  }

  let usingTable = false
  try {
    usingTable = true
    await store.tables.use(Math.ceil(size / pageSize))
    await store.index.imports.put(importId, { pid: process.pid, startedAt: Date.now(), path })
    let next = 0
    const launch = (): void => {
      const p = readAndHash(jobs[next++])
      p.catch(() => {}) // awaited in order below
      inflight.push(p)
    }
    while (inflight.length < Math.max(1, opts.readAhead) && next < jobs.length) launch()
    while (inflight.length > 0) {
      options.signal?.throwIfAborted()
      const r = await (inflight.shift() as Promise<Chunk>)
      if (next < jobs.length) launch()
      let written: Promise<void>
      try {
        ({ written } = await storeChunk(r))
      } catch (err) {
        store.hasher.release(r.buf)
        throw err
      }
      written.then(() => { store.hasher.release(r.buf) }, () => {})
    }
    addBlock(chunker.flush())
    const root = encodeRoot({ format, size, pageSize, extents, pages, chunks: chunker.chunks, chunking: { modulus: opts.chunkModulus, min: opts.chunkMin, max: opts.chunkMax } })
    addBlock(root)
    const rootKey = root.cid.toString()
    await store.lock.run(async () => {
      store.checkOpen()
      const existing = await store.index.pins.get(rootKey)
      const explicit = existing?.explicit === true || options.name == null
      const record: PinRecord = { state: 'complete', explicit, createdAt: Date.now(), size, pages, zeroPages, distinctPages: lease.pages.size, format }
      const ops: IndexOp[] = [store.index.putPin(rootKey, record), store.index.delImport(importId)]
      if (options.name != null) ops.push(...await store.refs.nameOps(options.name, rootKey))
      await store.pending.commit(ops, true)
      committed = true
    })
    log('imported %s as %s: %d pages, %d zero, %d new', path, rootKey, pages, zeroPages, newPages)
    return { root: root.cid, size, pages, zeroPages, newPages, format }
  } finally {
    if (usingTable) store.tables.release()
    for (const r of await Promise.allSettled(inflight)) {
      if (r.status === 'fulfilled') store.hasher.release(r.value.buf)
    }
    await fh.close().catch(() => {})
    if (!committed) {
      // keep what was written consistent; the unpinned pages are left for gc
      await store.lock.run(async () => {
        await store.pending.commit([store.index.delImport(importId)], true)
      }).catch(err => { log.error('cleaning up failed import: %e', err) })
    }
    store.leases.drop(lease)
  }
}
