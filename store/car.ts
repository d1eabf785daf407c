/**
 * Images as CAR files (CARv1), readable by IPFS tools: the manifest root is the CAR's root,
 * then the manifest chunk blocks (dag-cbor) and every distinct non-zero page (raw). Zero pages
 * are implicit, as in the store. Built on the Store contract only.
 *
 * Import reads the file twice: first it verifies every block against its CID and checks that
 * the image is complete (every page it lists is in the file or already held) — nothing is
 * stored if anything is wrong — then it stores the blocks and pages and pins the root.
 *
 * @example
 * ```ts
 * await exportCar(repo.store, 'vm1', '/tmp/vm1.car')
 * const { root } = await importCar(other.store, '/tmp/vm1.car', { name: 'vm1' })
 * ```
 */
import { createReadStream, createWriteStream } from 'node:fs'
import { rename, unlink } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CarBlockIterator, CarWriter } from '@ipld/car'
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import type { AbortOptions } from '@libp2p/interface'
import { BlockNotFoundError, CarBlockVerificationError, CarFormatError, InputFileError, PageNotFoundError } from './errors.ts'
import { DAG_CBOR_CODE, decodeChunk, decodeRoot } from './manifest.ts'
import { RAW_CODE, isPageCid, verifyBlock } from './page.ts'
import { PAGE_SIZE } from './constants.ts'
import type { Page, ProgressEvent, Store } from './index.ts'

const log = logger('memfabric:store:car')

/** Pages read from or written to the store at once. */
export const DEFAULT_CAR_BATCH = 256

export { CarBlockVerificationError, CarFormatError }

export interface CarOptions extends AbortOptions {
  /** Pages per store read/write (default DEFAULT_CAR_BATCH). */
  batch?: number
  onProgress?(evt: ProgressEvent): void
}

export interface CarExportResult {
  root: CID
  /** Manifest blocks written (root and chunks). */
  blocks: number
  /** Distinct non-zero pages written. */
  pages: number
  /** Image size. */
  size: number
}

export interface CarImportResult extends CarExportResult {
  /** Pages that were not in the store before. */
  newPages: number
}

/** Write the image at `ref` to `path` as a CARv1 file (appears under its name only when complete). */
export async function exportCar (store: Store, ref: string | CID, path: string, options: CarOptions = {}): Promise<CarExportResult> {
  const root = await store.resolve(ref, options)
  const manifest = await store.readManifest(root, options)
  const batchSize = options.batch ?? DEFAULT_CAR_BATCH
  const { writer, out } = CarWriter.create([root])
  const tmp = `${path}.tmp`
  let output: Promise<void>
  try {
    output = pipeline(Readable.from(out), createWriteStream(tmp))
  } catch (err: any) {
    throw new InputFileError(`cannot write ${path}: ${err.message}`, { cause: err })
  }
  // a failed write must not leave the writer waiting for a reader
  output.catch(() => {})
  let blocks = 0
  let pages = 0
  let done = 0
  try {
    for (const cid of [root, ...manifest.chunks]) {
      const bytes = await store.getBlock(cid, options)
      if (bytes == null) throw new BlockNotFoundError(`manifest block ${cid.toString()} of image ${root.toString()} is not in the store`)
      await writer.put({ cid, bytes })
      blocks++
    }
    const seen = new Set<string>()
    let batch: CID[] = []
    const flush = async (): Promise<void> => {
      for await (const { cid, bytes } of store.getMany(batch, options)) {
        if (bytes == null) throw new PageNotFoundError(`page ${cid.toString()} of image ${root.toString()} is not in the store`)
        await writer.put({ cid, bytes })
        pages++
      }
      batch = []
    }
    for await (const slot of store.pageSlots(root, options)) {
      done += slot.length
      if (slot.cid == null) continue
      const key = slot.cid.toString()
      if (seen.has(key)) continue
      seen.add(key)
      batch.push(slot.cid)
      if (batch.length >= batchSize) {
        await flush()
        options.onProgress?.({ done, total: manifest.size })
      }
    }
    await flush()
    await writer.close()
    await output
    await rename(tmp, path)
    options.onProgress?.({ done: manifest.size, total: manifest.size })
  } catch (err: any) {
    await writer.close().catch(() => {})
    await output.catch(() => {})
    await unlink(tmp).catch(() => {})
    if (err.code === 'ENOENT' || err.code === 'EACCES' || err.code === 'EISDIR') {
      throw new InputFileError(`cannot write ${path}: ${err.message}`, { cause: err })
    }
    throw err
  }
  log('exported %s to %s: %d blocks, %d pages', root.toString(), path, blocks, pages)
  return { root, blocks, pages, size: manifest.size }
}

/** Verify a CAR file of an image, then store its blocks and pages and pin its root. */
export async function importCar (store: Store, path: string, options: CarOptions & { name?: string } = {}): Promise<CarImportResult> {
  const batchSize = options.batch ?? DEFAULT_CAR_BATCH

  // pass 1: every block verified, the image complete; nothing stored yet
  const manifestBlocks = new Map<string, { cid: CID, bytes: Uint8Array }>()
  const pageCids = new Set<string>()
  let root: CID | undefined
  let fileBytes = 0
  await readCar(path, options, (roots) => {
    if (roots.length !== 1) throw new CarFormatError(`${path} has ${roots.length} roots; an image CAR has exactly one (its manifest root)`)
    root = roots[0]
    if (root.code !== DAG_CBOR_CODE) throw new CarFormatError(`the root of ${path} (${root.toString()}) is not a dag-cbor manifest`)
  }, (cid, bytes) => {
    if (!verifyBlock(cid, bytes)) {
      throw new CarBlockVerificationError(`block ${cid.toString()} in ${path} does not match its CID; nothing was imported`)
    }
    fileBytes += bytes.byteLength
    if (cid.code === DAG_CBOR_CODE) {
      manifestBlocks.set(cid.toString(), { cid, bytes })
    } else if (cid.code === RAW_CODE && isPageCid(cid) && bytes.byteLength <= PAGE_SIZE) {
      pageCids.add(cid.toString())
    } else {
      throw new CarFormatError(`block ${cid.toString()} in ${path} is neither a manifest block nor a memory page`)
    }
  })
  if (root == null) throw new CarFormatError(`${path} has no root`)
  const rootBlock = manifestBlocks.get(root.toString())
  if (rootBlock == null) throw new CarFormatError(`${path} does not hold its root block ${root.toString()}`)
  let manifest
  try {
    manifest = decodeRoot(root, rootBlock.bytes)
  } catch (err: any) {
    throw new CarFormatError(`the root of ${path} is not a memfabric image manifest: ${err.message}`, { cause: err })
  }
  const listed: CID[] = []
  for (const chunk of manifest.chunks) {
    const block = manifestBlocks.get(chunk.toString()) ?? await held(store, chunk, options)
    if (block == null) throw new CarFormatError(`${path} lacks manifest chunk ${chunk.toString()} of image ${root.toString()}`)
    for (const entry of decodeChunk(chunk, block.bytes)) {
      if (typeof entry !== 'number' && !pageCids.has(entry.toString())) listed.push(entry)
    }
  }
  // pages not in the file are fine when this store holds them already
  for (let i = 0; i < listed.length; i += batchSize) {
    const slice = listed.slice(i, i + batchSize)
    const have = await store.has(slice, options)
    const missing = slice.find((_, j) => !have[j])
    if (missing != null) throw new CarFormatError(`${path} lacks page ${missing.toString()} of image ${root.toString()}, and this store does not hold it`)
  }

  // pass 2: store pages, then manifest blocks, then pin
  let newPages = 0
  let pages = 0
  let done = 0
  let batch: Page[] = []
  const flush = async (): Promise<void> => {
    const taken = batch
    batch = []
    if (taken.length === 0) return
    newPages += await store.putMany(taken, options)
    pages += taken.length
    options.onProgress?.({ done, total: fileBytes })
  }
  const writes: Array<Promise<void>> = []
  await readCar(path, options, () => {}, (cid, bytes) => {
    if (cid.code !== RAW_CODE) return
    // the file may have changed since pass 1: putMany verifies again
    done += bytes.byteLength
    batch.push({ cid, bytes })
    if (batch.length >= batchSize) writes.push(flush())
  }, async () => { await Promise.all(writes.splice(0)) })
  await Promise.all(writes)
  await flush()
  for (const { cid, bytes } of manifestBlocks.values()) {
    await store.putBlock(cid, bytes, options)
  }
  await store.pin(root, { name: options.name, signal: options.signal })
  options.onProgress?.({ done: fileBytes, total: fileBytes })
  log('imported %s from %s: %d blocks, %d pages (%d new)', root.toString(), path, manifestBlocks.size, pages, newPages)
  return { root, blocks: manifestBlocks.size, pages, size: manifest.size, newPages }
}

async function held (store: Store, cid: CID, options: AbortOptions): Promise<{ bytes: Uint8Array } | undefined> {
  const bytes = await store.getBlock(cid, options)
  return bytes != null ? { bytes } : undefined
}

/** Stream the blocks of a CAR file; `drain` (when given) runs between blocks when work piles up. */
async function readCar (path: string, options: AbortOptions, onRoots: (roots: CID[]) => void, onBlock: (cid: CID, bytes: Uint8Array) => void, drain?: () => Promise<void>): Promise<void> {
  const stream = createReadStream(path)
  try {
    let blocks: CarBlockIterator
    try {
      blocks = await CarBlockIterator.fromIterable(stream)
    } catch (err: any) {
      if (err.code === 'ENOENT' || err.code === 'EACCES' || err.code === 'EISDIR') throw new InputFileError(`cannot read ${path}: ${err.message}`, { cause: err })
      throw new CarFormatError(`${path} is not a CAR file: ${err.message}`, { cause: err })
    }
    onRoots(await blocks.getRoots())
    let n = 0
    const it = blocks[Symbol.asyncIterator]()
    while (true) {
      options.signal?.throwIfAborted()
      let next: IteratorResult<{ cid: CID, bytes: Uint8Array }>
      try {
        next = await it.next()
      } catch (err: any) {
        throw new CarFormatError(`${path} is not a valid CAR file: ${err.message}`, { cause: err })
      }
      if (next.done === true) break
      onBlock(next.value.cid, next.value.bytes)
      if (drain != null && ++n % DEFAULT_CAR_BATCH === 0) await drain()
    }
  } finally {
    stream.destroy()
  }
}
