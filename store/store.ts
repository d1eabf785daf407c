/**
 * The on-disk page store: page bytes in append-only pack files, manifest blocks in block
 * files, everything else in level (see schema.ts for its sublevels).
 *
 * {@link LevelPackStore} is a facade over one part per concept, each in its own file:
 * - schema.ts          the level index, its sublevels, key codecs and typed batch ops
 * - pending.ts         pages and blocks written but not committed, and the commit
 * - page-index.ts      where each page is (pending, page table or level) and reading it back
 * - page-table-cache.ts when the page index is held in memory, and for how long
 * - prefix-lookup.ts   digest prefixes to held pages, with its cost model
 * - manifest-reader.ts walking a manifest's slots
 * - refs.ts            names and pins
 * - leases.ts          what writers in progress keep through a gc
 * Import, export, gc and verify receive those parts ({@link StoreInternals}), not the store.
 *
 * Pack bytes are fdatasync'd before the index entries that point at them commit, and entries
 * that belong together commit in one level batch, so a crash leaves at most orphan bytes.
 */
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import { logger } from '@libp2p/logger'
import type { AbortOptions } from '@libp2p/interface'
import { PageVerificationError, StoreClosedError } from './errors.ts'
import { PAGE_SIZE } from './constants.ts'
import { digestKey, digestToCid, isPageCid, isZeroDigest, isZeroPage, verifyBlock, verifyPage } from './page.ts'
import { Packs } from './pack.ts'
import { BlockFiles } from './block-files.ts'
import { Hasher } from './hasher.ts'
import { Mutex } from './mutex.ts'
import { resolveStoreOptions } from './options.ts'
import type { ResolvedStoreOptions, StoreOptions } from './options.ts'
import { IndexDb } from './schema.ts'
import { Leases } from './leases.ts'
import { PageTableCache } from './page-table-cache.ts'
import type { PageTable } from './page-table.ts'
import { PendingWrites } from './pending.ts'
import { PageIndex } from './page-index.ts'
import { resolvePrefixes } from './prefix-lookup.ts'
import { ManifestReader } from './manifest-reader.ts'
import { Refs } from './refs.ts'
import { importImage } from './import/importer.ts'
import { exportImage } from './export.ts'
import { collectGarbage } from './gc.ts'
import { verifyStore } from './verify.ts'
import type { StoreInternals } from './internal.ts'
import type {
  ExportOptions, GcResult, ImageInfo, ImportOptions, ImportResult, Manifest, Page, PageSlot, SlotArrays,
  PinOptions, PutOptions, Store, StoreStats, VerifyResult
} from './index.ts'

// moved to their own files; re-exported for importers of this one
export { prefixLookup } from './prefix-lookup.ts'
export { validateName } from './refs.ts'
export { digestKey } from './page.ts'
export { delPageOp, pageKey, putPageOp } from './schema.ts'
export type { PinRecord } from './schema.ts'
export type { Lease } from './leases.ts'
export type { Slot } from './manifest-reader.ts'
export type { StoreInternals } from './internal.ts'

const log = logger('memfabric:store')

/** Pages looked up and read per round of {@link LevelPackStore.getMany}. */
const GET_BATCH = 256

export class LevelPackStore extends EventTarget implements Store {
  readonly dir: string
  private readonly options: ResolvedStoreOptions
  private readonly index: IndexDb
  private readonly packs: Packs
  private readonly blockFiles: BlockFiles
  private readonly hasher: Hasher
  private readonly lock = new Mutex()
  private readonly tables: PageTableCache
  private readonly pending: PendingWrites
  private readonly pages: PageIndex
  private readonly manifests: ManifestReader
  private readonly refs: Refs
  /** The parts import, export, gc and verify work on. */
  private readonly internals: StoreInternals
  private closed = false
  /** Listeners per event type: building CIDs for an event nobody hears costs more than hashing. */
  private readonly listening = new Map<string, number>()

  private constructor (dir: string, options: ResolvedStoreOptions) {
    super()
    this.dir = dir
    this.options = options
    const index = this.index = new IndexDb(dir)
    const packs = this.packs = new Packs(join(dir, 'packs'), options.packSize)
    const blockFiles = this.blockFiles = new BlockFiles(join(dir, 'blocks'))
    this.hasher = new Hasher(options.hashWorkers)
    const lock = this.lock
    const tables = this.tables = new PageTableCache({ index, packs, lock, maxPages: options.pageTableMaxPages })
    const pending = this.pending = new PendingWrites({ index, packs, blockFiles, tables, events: this })
    const pages = this.pages = new PageIndex({ index, packs, pending, tables })
    const manifests = this.manifests = new ManifestReader({ blocks: this, pages })
    this.refs = new Refs({ index, lock, blockFiles, blocks: this, manifests })
    this.internals = {
      options,
      index,
      packs,
      blockFiles,
      blocks: this,
      hasher: this.hasher,
      lock,
      leases: new Leases(),
      pending,
      pages,
      tables,
      manifests,
      refs: this.refs,
      events: this,
      checkOpen: () => { this.checkOpen() }
    }
  }

  /** Open the store in repository `dir` and recover from any interrupted write. */
  static async open (dir: string, options: StoreOptions = {}): Promise<LevelPackStore> {
    const store = new LevelPackStore(dir, resolveStoreOptions(options))
    await store.index.open()
    try {
      await store.blockFiles.open()
      await store.index.moveLegacyBlocks(store.blockFiles)
      await store.packs.recover(await store.index.packEntries())
      const leftovers = await store.index.imports.keys().all()
      if (leftovers.length > 0) {
        // imports killed before they pinned: their pages and blocks are garbage now
        log('recovering from %d interrupted import(s)', leftovers.length)
        await store.index.write(leftovers.map(key => store.index.delImport(key)))
        await store.gc()
      }
    } catch (err) {
      await store.close()
      throw err
    }
    return store
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.tables.close()
    await this.lock.run(async () => {
      if (!this.pending.empty) {
        await this.pending.commit([], true).catch(err => { log.error('commit on close failed: %e', err) })
      }
    })
    await this.hasher.close()
    await this.packs.close()
    await this.index.close()
  }

  override addEventListener (...args: Parameters<EventTarget['addEventListener']>): void {
    const [type, listener] = args
    if (listener != null) this.listening.set(type, (this.listening.get(type) ?? 0) + 1)
    super.addEventListener(...args)
  }

  override removeEventListener (...args: Parameters<EventTarget['removeEventListener']>): void {
    const [type, listener] = args
    if (listener != null) this.listening.set(type, Math.max(0, (this.listening.get(type) ?? 0) - 1))
    super.removeEventListener(...args)
  }

  /** Whether anyone may be listening for `type` (counts can over-estimate, never under). */
  hasListeners (type: string): boolean {
    return (this.listening.get(type) ?? 0) > 0
  }

  private checkOpen (): void {
    if (this.closed) throw new StoreClosedError()
  }

  /** The in-memory page index, when loaded (tests watch for its background load). */
  get table (): PageTable | undefined {
    return this.tables.table
  }

  // ---- PageStore ----

  async has (cids: CID[], options: AbortOptions = {}): Promise<boolean[]> {
    this.checkOpen()
    options.signal?.throwIfAborted()
    const out = new Array<boolean>(cids.length).fill(false)
    const ask: Uint8Array[] = []
    const at: number[] = []
    cids.forEach((cid, i) => {
      if (!isPageCid(cid)) return
      const d = cid.multihash.digest
      if (isZeroDigest(d)) {
        out[i] = true
        return
      }
      ask.push(d)
      at.push(i)
    })
    const locs = await this.pages.lookup(ask)
    locs.forEach((l, j) => { out[at[j]] = l != null })
    return out
  }

  async get (cid: CID, options: AbortOptions = {}): Promise<Uint8Array | undefined> {
    for await (const { bytes } of this.getMany([cid], options)) return bytes
    return undefined
  }

  async * getMany (cids: CID[], options: AbortOptions = {}): AsyncGenerator<{ cid: CID, bytes?: Uint8Array }> {
    this.checkOpen()
    for (let start = 0; start < cids.length; start += GET_BATCH) {
      options.signal?.throwIfAborted()
      const batch = cids.slice(start, start + GET_BATCH)
      const digests = batch.map(c => (isPageCid(c) ? c.multihash.digest : new Uint8Array(32)))
      const locs = await this.pages.lookup(digests)
      const results = await Promise.all(batch.map(async (cid, i) => {
        if (!isPageCid(cid)) return undefined
        if (isZeroDigest(digests[i])) return new Uint8Array(PAGE_SIZE)
        const loc = locs[i]
        if (loc == null) return undefined
        return this.pages.read(cid, loc)
      }))
      for (let i = 0; i < batch.length; i++) {
        yield results[i] == null ? { cid: batch[i] } : { cid: batch[i], bytes: results[i] }
      }
    }
  }

  async putMany (pages: Page[], options: PutOptions = {}): Promise<number> {
    this.checkOpen()
    options.signal?.throwIfAborted()
    const verified = options.verified === true
    const fresh = new Map<string, Page>()
    for (const p of pages) {
      if (!isPageCid(p.cid) || p.bytes.byteLength > PAGE_SIZE || (!verified && !verifyPage(p.cid, p.bytes))) {
        throw new PageVerificationError(`page ${p.cid.toString()} does not match its bytes`)
      }
      if (isZeroPage(p.bytes) && p.bytes.byteLength === PAGE_SIZE) continue
      fresh.set(digestKey(p.cid.multihash.digest), p)
    }
    if (fresh.size === 0) return 0
    return this.lock.run(async () => {
      this.checkOpen()
      const list = [...fresh.values()]
      const locs = await this.pages.lookup(list.map(p => p.cid.multihash.digest))
      const add = list.filter((_, i) => locs[i] == null)
      if (add.length === 0) return 0
      const digests = Buffer.allocUnsafe(add.length * 32)
      add.forEach((p, i) => { digests.set(p.cid.multihash.digest, i * 32) })
      await this.pending.append(digests, add.map((_, i) => i * 32), add.map(p => p.bytes), add.map(p => p.bytes.byteLength))
      await this.pending.commit([], false, options.announce === false ? new Set(add.map(p => digestKey(p.cid.multihash.digest))) : undefined)
      return add.length
    })
  }

  async resolvePrefixes (prefixes: Uint8Array, options: AbortOptions = {}): Promise<Array<Uint8Array | undefined>> {
    this.checkOpen()
    return resolvePrefixes(this.internals, prefixes, options)
  }

  async * allPages (options: AbortOptions & { batchSize?: number } = {}): AsyncGenerator<CID[]> {
    this.checkOpen()
    const it = this.index.pages.keys()
    try {
      while (true) {
        options.signal?.throwIfAborted()
        const keys = await it.nextv(options.batchSize ?? 1024)
        if (keys.length === 0) break
        yield keys.map(k => digestToCid(k))
      }
    } finally {
      await it.close()
    }
  }

  // ---- BlockStore ----

  async getBlock (cid: CID, options: AbortOptions = {}): Promise<Uint8Array | undefined> {
    this.checkOpen()
    options.signal?.throwIfAborted()
    const pending = this.pending.blocks.get(cid.toString())
    return pending != null ? pending.bytes : await this.blockFiles.get(cid)
  }

  async putBlock (cid: CID, bytes: Uint8Array, options: AbortOptions = {}): Promise<void> {
    this.checkOpen()
    options.signal?.throwIfAborted()
    if (!verifyBlock(cid, bytes)) throw new PageVerificationError(`block ${cid.toString()} does not match its bytes`)
    await this.blockFiles.put(cid, bytes)
  }

  async hasBlock (cid: CID, options: AbortOptions = {}): Promise<boolean> {
    this.checkOpen()
    options.signal?.throwIfAborted()
    return this.pending.blocks.has(cid.toString()) || (await this.blockFiles.has(cid))
  }

  // ---- images ----

  async importImage (path: string, options: ImportOptions = {}): Promise<ImportResult> {
    this.checkOpen()
    return importImage(this.internals, path, options)
  }

  async exportImage (ref: string | CID, outPath: string, options: ExportOptions = {}): Promise<void> {
    this.checkOpen()
    return exportImage(this.internals, ref, outPath, options)
  }

  async resolve (ref: string | CID, options: AbortOptions = {}): Promise<CID> {
    this.checkOpen()
    return this.refs.resolve(ref, options)
  }

  async readManifest (root: CID, options: AbortOptions = {}): Promise<Manifest> {
    return this.manifests.read(root, options)
  }

  async * pageSlots (root: CID, options: AbortOptions = {}): AsyncGenerator<PageSlot> {
    this.checkOpen()
    yield * this.manifests.pageSlots(root, options)
  }

  async * slotArrays (root: CID, options: AbortOptions = {}): AsyncGenerator<SlotArrays> {
    yield * this.manifests.slotArrays(root, options)
  }

  async pin (root: CID, options: PinOptions = {}): Promise<void> {
    this.checkOpen()
    await this.refs.pin(root, options)
  }

  async remove (ref: string | CID, options: AbortOptions = {}): Promise<void> {
    this.checkOpen()
    await this.refs.remove(ref, options)
  }

  async release (root: CID, creator: string, options: AbortOptions = {}): Promise<boolean> {
    this.checkOpen()
    return this.refs.release(root, creator, options)
  }

  async list (options: AbortOptions = {}): Promise<ImageInfo[]> {
    this.checkOpen()
    return this.refs.list(options)
  }

  async inspect (ref: string | CID, options: AbortOptions = {}): Promise<ImageInfo> {
    this.checkOpen()
    return this.refs.inspect(ref, options)
  }

  async gc (options: AbortOptions = {}): Promise<GcResult> {
    this.checkOpen()
    return collectGarbage(this.internals, options)
  }

  async stats (options: AbortOptions = {}): Promise<StoreStats> {
    this.checkOpen()
    options.signal?.throwIfAborted()
    let images = 0
    let logicalBytes = 0
    let zeroPages = 0
    for await (const rec of this.index.pins.values()) {
      images++
      logicalBytes += rec.size
      zeroPages += rec.zeroPages
    }
    let distinctPages = 0
    let storedBytes = 0
    let packBytes = 0
    for (const [id, e] of this.packs.entries) {
      distinctPages += e.livePages
      storedBytes += e.liveBytes
      packBytes += (await this.packs.fileSize(id)) ?? 0
    }
    return { images, logicalBytes, zeroPages, distinctPages, storedBytes, packBytes, dedupRatio: storedBytes > 0 ? logicalBytes / storedBytes : 0 }
  }

  async verify (options: AbortOptions & { deep?: boolean } = {}): Promise<VerifyResult> {
    this.checkOpen()
    return verifyStore(this.internals, options)
  }
}
