/**
 * The on-disk page store: page bytes in append-only pack files, everything else in level.
 *
 * Sublevels of `<repo>/index` (each with an explicit encoding):
 * - `pages`   32-byte sha-256 digest → pack id, offset, length (12 bytes)
 * - `blocks`  manifest block CID → block bytes
 * - `names`   image name → root CID
 * - `pins`    root CID → {@link PinRecord}
 * - `packs`   pack id → {@link PackEntry} (committed size, live pages and bytes)
 * - `imports` in-progress import id → {pid, startedAt}: left behind only by a crash
 *
 * Pack bytes are fdatasync'd before the index entries that point at them commit, and entries
 * that belong together commit in one level batch, so a crash leaves at most orphan bytes.
 */
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { CID } from 'multiformats/cid'
import { logger } from '@libp2p/logger'
import type { AbstractSublevel } from 'abstract-level'
import type { AbortOptions } from '@libp2p/interface'
import {
  BlockNotFoundError, ImageFormatError, InvalidRefError, PageNotFoundError, PageVerificationError,
  RefNotFoundError, RepoCorruptError, RepoLockedError, StoreClosedError
} from './errors.ts'
import { PAGE_SIZE } from './constants.ts'
import { digestToCid, isPageCid, isZeroPage, sha256Digest, verifyPage } from './page.ts'
import { LOCATION_BYTES, Packs, decodeLocation, encodeLocation, packKey, writeLocation } from './pack.ts'
import type { PackEntry, PageLocation } from './pack.ts'
import { BlockFiles } from './block-files.ts'
import { Hasher } from './hasher.ts'
import { PageTable, release } from './page-table.ts'
import { Mutex } from './mutex.ts'
import { decodeChunkDigests, decodeRoot, extentPages, verifyBlock } from './manifest.ts'
import type { Block } from './manifest.ts'
import { resolveStoreOptions } from './options.ts'
import type { ResolvedStoreOptions, StoreOptions } from './options.ts'
import { importImage } from './import/importer.ts'
import { exportImage } from './export.ts'
import { collectGarbage } from './gc.ts'
import { verifyStore } from './verify.ts'
import type {
  ExportOptions, GcResult, ImageInfo, ImportOptions, ImportResult, Manifest, Page, PageSlot, SlotArrays,
  PinOptions, PutOptions, Store, StoreStats, VerifyResult
} from './index.ts'

const log = logger('memfabric:store')

/** Idle time after which the page table of a finished bulk operation is dropped (ms). */
const PAGE_TABLE_IDLE_MS = 10_000

export interface PinRecord {
  state: 'complete' | 'partial'
  /**
   * Pinned without a name (an import or `pin` with no name): then the pin stays when its last
   * name is removed or moved. Absent in records written before this field existed: false.
   */
  explicit?: boolean
  createdAt: number
  size: number
  pages: number
  zeroPages: number
  distinctPages: number
  format: 'raw' | 'elf'
}

/** Digests and blocks an in-progress import (or other writer) needs kept through a gc. */
export interface Lease {
  /** Page digests (a set: locations unused). */
  pages: PageTable
  blocks: Set<string>
}

type Sub<K, V> = AbstractSublevel<ClassicLevel<string, string>, string | Buffer | Uint8Array, K, V>

/** An image slot inside the store: a page digest, or null for a zero page. */
export interface Slot {
  index: number
  offset: number
  length: number
  digest: Uint8Array | null
}

/**
 * Page index keys are written on the root database with the `pages` sublevel's own prefix:
 * classic-level's getMany through a sublevel is ~10x slower than on the root (measured here).
 */
const PAGE_PREFIX = Buffer.from('!pages!')
/** Index keys read per call while scanning. */
const SCAN_BATCH = 4096
/** CPU of one seek in the page index, and of one key read in a scan (measured on a 734k-page index: 68 µs, 0.9 µs). */
const SEEK_US = 70
const SCAN_KEY_US = 1
/** What a round trip to the thread pool may wait for when the pool is busy (fdatasyncs of other work). */
const POOL_WAIT_US = 250

/**
 * How to resolve `n` prefixes among the `keys` index keys their range holds: a seek each costs
 * `n` pool round trips, one scan reads every key of the range in batches. Scanning a large
 * index for a request of 256 prefixes took 0.7 s a request and stalled a source past its
 * peers' idle timeouts; seeking a small one costs more round trips than it saves.
 */
export function prefixLookup (n: number, keys: number): 'seek' | 'scan' {
  const seek = n * (SEEK_US + POOL_WAIT_US)
  const scan = keys * SCAN_KEY_US + Math.ceil(keys / SCAN_BATCH) * POOL_WAIT_US
  return seek < scan ? 'seek' : 'scan'
}
const VIEW = 'view'
const VIEW_OPTIONS = { keyEncoding: VIEW, valueEncoding: VIEW }

export function pageKey (digest: Uint8Array): Buffer {
  const k = Buffer.allocUnsafe(PAGE_PREFIX.byteLength + 32)
  PAGE_PREFIX.copy(k, 0)
  k.set(digest, PAGE_PREFIX.byteLength)
  return k
}

export function putPageOp (digest: Uint8Array, loc: PageLocation): any {
  return { type: 'put', key: pageKey(digest), value: encodeLocation(loc), keyEncoding: VIEW, valueEncoding: VIEW }
}

export function delPageOp (digest: Uint8Array): any {
  return { type: 'del', key: pageKey(digest), keyEncoding: VIEW }
}

const NAME_RE = /^[A-Za-z0-9._@:-]{1,255}$/
const ZERO_DIGEST = sha256Digest(new Uint8Array(PAGE_SIZE))

/** Map key of a digest: a 32-char latin1 string. */
export function digestKey (digest: Uint8Array): string {
  if (Buffer.isBuffer(digest)) return digest.toString('latin1')
  return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('latin1')
}

function parseCid (ref: string): CID | undefined {
  try {
    return CID.parse(ref)
  } catch {
    return undefined
  }
}

/** Throw InvalidRefError unless `name` may name an image. */
export function validateName (name: string): void {
  if (!NAME_RE.test(name)) {
    throw new InvalidRefError(`invalid image name "${name}": use 1-255 of A-Z a-z 0-9 . _ @ : -`)
  }
  if (parseCid(name) != null) {
    throw new InvalidRefError(`invalid image name "${name}": it reads as a CID`)
  }
}

/** Walks an image's extents slot by slot: where each next slot lies and how long it is. */
class ExtentWalk {
  /** Slots walked so far (the index of the next one). */
  index = 0
  /** Length of the slot {@link next} returned last. */
  length = 0
  private ext = 0
  private inExt = 0
  private readonly root: CID
  private readonly m: Manifest

  constructor (root: CID, m: Manifest) {
    this.root = root
    this.m = m
  }

  /** Image offset of the next slot (its length in {@link length}). */
  next (): number {
    const { extents, pageSize: ps } = this.m
    while (this.ext < extents.length && this.inExt >= extentPages(extents[this.ext], ps)) {
      this.ext++
      this.inExt = 0
    }
    if (this.ext >= extents.length) throw new ImageFormatError(`manifest ${this.root.toString()} lists more pages than its extents hold`)
    const e = extents[this.ext]
    const offset = e.offset + this.inExt * ps
    this.inExt++
    this.index++
    this.length = Math.min(ps, e.offset + e.length - offset)
    return offset
  }
}

export class LevelPackStore extends EventTarget implements Store {
  readonly dir: string
  readonly options: ResolvedStoreOptions
  readonly db: ClassicLevel<string, string>
  readonly pagesDb: Sub<Uint8Array, Uint8Array>
  /** Where manifest blocks were kept before they moved to {@link blocks}; emptied on open. */
  private readonly legacyBlocksDb: Sub<string, Uint8Array>
  readonly blocks: BlockFiles
  readonly namesDb: Sub<string, string>
  readonly pinsDb: Sub<string, PinRecord>
  readonly packsDb: Sub<string, PackEntry>
  readonly importsDb: Sub<string, { pid: number, startedAt: number, path: string }>
  readonly packs: Packs
  readonly hasher: Hasher
  /** Held by every step that reads presence and then writes pages, pins or names; gc holds it throughout. */
  readonly lock = new Mutex()
  readonly leases = new Set<Lease>()
  /** Pages appended to a pack but not yet committed to the index. */
  readonly pending = new PageTable()
  pendingBytes = 0
  readonly pendingBlocks = new Map<string, Block>()
  /**
   * The committed page index in memory, once a bulk operation asked for it (see
   * {@link useTable}); kept in step with every index batch. Pending pages are not in it.
   */
  table?: PageTable
  /** Operations between useTable and releaseTable. */
  private tableUsers = 0
  /** A background load of the page table for resolvePrefixes is running. */
  private tableLoading = false
  private tableTimer?: ReturnType<typeof setTimeout>
  private closed = false
  /** Listeners per event type: building CIDs for an event nobody hears costs more than hashing. */
  private readonly listening = new Map<string, number>()

  private constructor (dir: string, options: ResolvedStoreOptions) {
    super()
    this.dir = dir
    this.options = options
    this.db = new ClassicLevel<string, string>(join(dir, 'index'), {
      keyEncoding: 'utf8',
      valueEncoding: 'utf8',
      // keys are digests and values pack offsets: snappy only costs CPU; uncompressed blocks
      // are read from the mapped tables, so LevelDB's block cache (default 8 MiB) holds little
      compression: false,
      cacheSize: 1024 * 1024
    })
    this.pagesDb = this.db.sublevel<Uint8Array, Uint8Array>('pages', { keyEncoding: 'view', valueEncoding: 'view' })
    this.legacyBlocksDb = this.db.sublevel<string, Uint8Array>('blocks', { keyEncoding: 'utf8', valueEncoding: 'view' })
    this.blocks = new BlockFiles(join(dir, 'blocks'))
    this.namesDb = this.db.sublevel<string, string>('names', { keyEncoding: 'utf8', valueEncoding: 'utf8' })
    this.pinsDb = this.db.sublevel<string, PinRecord>('pins', { keyEncoding: 'utf8', valueEncoding: 'json' })
    this.packsDb = this.db.sublevel<string, PackEntry>('packs', { keyEncoding: 'utf8', valueEncoding: 'json' })
    this.importsDb = this.db.sublevel<string, { pid: number, startedAt: number, path: string }>('imports', { keyEncoding: 'utf8', valueEncoding: 'json' })
    this.packs = new Packs(join(dir, 'packs'), options.packSize)
    this.hasher = new Hasher(options.hashWorkers)
  }

  /** Open the store in repository `dir` and recover from any interrupted write. */
  static async open (dir: string, options: StoreOptions = {}): Promise<LevelPackStore> {
    const store = new LevelPackStore(dir, resolveStoreOptions(options))
    try {
      await store.db.open()
    } catch (err: any) {
      if (err.cause?.code === 'LEVEL_LOCKED' || err.code === 'LEVEL_LOCKED') {
        throw new RepoLockedError(`repository ${dir} is in use by another process (its index is locked)`)
      }
      throw new RepoCorruptError(`cannot open the index of ${dir}: ${err.message}`, { cause: err })
    }
    try {
      await store.blocks.open()
      await store.moveLegacyBlocks()
      const entries = new Map<number, PackEntry>()
      for await (const [k, v] of store.packsDb.iterator()) entries.set(Number(k), v)
      await store.packs.recover(entries)
      const leftovers = await store.importsDb.keys().all()
      if (leftovers.length > 0) {
        // imports killed before they pinned: their pages and blocks are garbage now
        log('recovering from %d interrupted import(s)', leftovers.length)
        await store.db.batch(leftovers.map(key => ({ type: 'del' as const, sublevel: store.importsDb, key })) as any)
        await store.gc()
      }
    } catch (err) {
      await store.close()
      throw err
    }
    return store
  }

  /** Move manifest blocks of an older repository from the index to files (durably, then delete them there). */
  private async moveLegacyBlocks (): Promise<void> {
    let moved = 0
    while (true) {
      const entries = await this.legacyBlocksDb.iterator({ limit: 1024 }).all()
      if (entries.length === 0) break
      for (const [key, bytes] of entries) await this.blocks.put(CID.parse(key), bytes)
      await this.blocks.sync()
      await this.legacyBlocksDb.batch(entries.map(([key]) => ({ type: 'del' as const, key })))
      moved += entries.length
    }
    if (moved > 0) log('moved %d manifest blocks from the index to %s', moved, this.blocks.dir)
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.tableTimer)
    await this.lock.run(async () => {
      if (this.pending.size > 0 || this.pendingBlocks.size > 0) {
        await this.commitPending([], true).catch(err => { log.error('commit on close failed: %e', err) })
      }
    })
    await this.hasher.close()
    await this.packs.close()
    await this.db.close()
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

  checkOpen (): void {
    if (this.closed) throw new StoreClosedError()
  }

  // ---- internal helpers used by import, export, gc and verify ----

  /** Register digests/blocks to keep through a gc; drop it with `leases.delete`. */
  lease (): Lease {
    const l: Lease = { pages: new PageTable(0, { locations: false }), blocks: new Set() }
    this.leases.add(l)
    return l
  }

  /** Committed pages (not counting pending ones). */
  livePages (): number {
    let n = 0
    for (const e of this.packs.entries.values()) n += e.livePages
    return n
  }

  /**
   * Load the page table before an operation that looks up about `expected` pages, when that
   * pays: a scan of the index costs about half a lookup per indexed page, so only when the
   * operation touches at least half as many pages as the store holds (or the table is already
   * loaded), and never past `pageTableMaxPages`. Takes the lock: do not call with it held.
   */
  async useTable (expected: number): Promise<void> {
    this.tableUsers++
    clearTimeout(this.tableTimer)
    if (this.table != null) return
    const max = this.options.pageTableMaxPages
    const live = this.livePages()
    if (max <= 0 || live > max || expected * 2 < live) return
    await this.lock.run(async () => {
      if (this.table != null) return
      const table = new PageTable(this.livePages())
      const end = Buffer.from(PAGE_PREFIX)
      end[end.byteLength - 1]++
      const it = this.db.iterator<Uint8Array, Uint8Array>({ gt: PAGE_PREFIX, lt: end, keyEncoding: VIEW, valueEncoding: VIEW })
      try {
        while (true) {
          const entries = await it.nextv(8192)
          if (entries.length === 0) break
          for (const [k, v] of entries) table.set(k, PAGE_PREFIX.byteLength, decodeLocation(v))
        }
      } finally {
        await it.close()
      }
      if (table.size <= max) this.table = table
      log('page table loaded: %d pages, %d bytes', table.size, table.bytes)
    })
  }

  /**
   * Called once per {@link useTable} when that operation ends: once no operation has used the
   * table for PAGE_TABLE_IDLE_MS it is dropped, so a long-running daemon does not keep up to
   * `pageTableMaxPages` entries (~49 MB) between migrations, while an export right after an
   * import still finds it; the next bulk operation reloads it.
   */
  releaseTable (): void {
    this.tableUsers = Math.max(0, this.tableUsers - 1)
    if (this.tableUsers > 0 || this.table == null) return
    clearTimeout(this.tableTimer)
    this.tableTimer = setTimeout(() => {
      if (this.tableUsers > 0 || this.table == null) return
      log('page table released at %d pages', this.table.size)
      this.table = undefined
    }, PAGE_TABLE_IDLE_MS)
    this.tableTimer.unref()
  }

  /** Keep the table within its bound after it grew. */
  private checkTable (): void {
    if (this.table != null && this.table.size > this.options.pageTableMaxPages) {
      log('page table dropped at %d pages', this.table.size)
      this.table = undefined
    }
  }

  /** Record committed index changes in the page table (call after the batch committed). */
  tableSet (digest: Uint8Array, loc: PageLocation): void {
    this.table?.set(digest, 0, loc)
  }

  tableDelete (digest: Uint8Array): void {
    this.table?.delete(digest, 0)
  }

  /** Where each page is stored (pending or committed), `undefined` when not held. */
  async lookup (digests: Uint8Array[]): Promise<Array<PageLocation | undefined>> {
    const buf = Buffer.allocUnsafe(digests.length * 32)
    const at = new Array<number>(digests.length)
    for (let i = 0; i < digests.length; i++) {
      buf.set(digests[i], i * 32)
      at[i] = i * 32
    }
    return this.locate(buf, at)
  }

  /** {@link lookup} by digest keys (latin1 strings). */
  async lookupKeys (keys: string[]): Promise<Array<PageLocation | undefined>> {
    const buf = Buffer.allocUnsafe(keys.length * 32)
    const at = new Array<number>(keys.length)
    for (let i = 0; i < keys.length; i++) {
      buf.write(keys[i], i * 32, 32, 'latin1')
      at[i] = i * 32
    }
    return this.locate(buf, at)
  }

  /**
   * {@link lookup} of the digests `buf[at[j], at[j] + 32)`: pending pages, then the page table
   * when loaded, else one key buffer and one level getMany for the lot.
   */
  async locate (buf: Uint8Array, at: number[]): Promise<Array<PageLocation | undefined>> {
    const n = at.length
    const out = new Array<PageLocation | undefined>(n).fill(undefined)
    const ask: number[] = []
    const pending = this.pending.size > 0 ? this.pending : undefined
    const table = this.table
    for (let j = 0; j < n; j++) {
      const p = pending?.get(buf, at[j])
      if (p != null) out[j] = p
      else if (table != null) out[j] = table.get(buf, at[j])
      else ask.push(j)
    }
    if (ask.length > 0) {
      const kl = PAGE_PREFIX.byteLength + 32
      const kb = Buffer.allocUnsafe(ask.length * kl)
      const keys = new Array<Uint8Array>(ask.length)
      for (let q = 0; q < ask.length; q++) {
        const o = q * kl
        PAGE_PREFIX.copy(kb, o)
        kb.set(buf.subarray(at[ask[q]], at[ask[q]] + 32), o + PAGE_PREFIX.byteLength)
        keys[q] = kb.subarray(o, o + kl)
      }
      const values = await this.db.getMany<Uint8Array, Uint8Array>(keys, { keyEncoding: VIEW, valueEncoding: VIEW })
      for (let q = 0; q < values.length; q++) {
        const v = values[q]
        if (v != null) out[ask[q]] = decodeLocation(v)
      }
    }
    return out
  }

  /**
   * Append new pages (already known to be absent) to the pack as one write and record them as
   * pending: page i has the digest `digests[at[i], at[i] + 32)` and is `lengths[i]` long; `bytes`
   * is their concatenation (one buffer or several). Call with the lock held.
   */
  async appendPages (digests: Uint8Array, at: number[], bytes: Uint8Array | Uint8Array[], lengths: number[]): Promise<{ done: Promise<void> }> {
    const { pack, offset, done } = await this.packs.append(bytes)
    let pos = offset
    for (let i = 0; i < lengths.length; i++) {
      this.pending.setFields(digests, at[i], pack, pos, lengths[i])
      pos += lengths[i]
    }
    this.pendingBytes += pos - offset
    return { done }
  }

  /**
   * Sync pack data, then commit pending pages and blocks, pack sizes and `extra` in one batch.
   * Call with the lock held.
   */
  async commitPending (extra: any[] = [], sync = false, quiet?: Set<string>): Promise<void> {
    await this.packs.sync()
    for (const b of this.pendingBlocks.values()) await this.blocks.put(b.cid, b.bytes)
    await this.blocks.sync()
    const n = this.pending.size
    if (n === 0 && this.pendingBlocks.size === 0 && extra.length === 0 && !this.packs.hasWritten()) return
    // a chained batch: one native call per entry, where an array batch copies and checks
    // every op object first (about 3x the CPU for the page entries, measured here)
    const batch = this.db.batch()
    try {
      const deltas = new Map<number, { pages: number, bytes: number }>()
      // every key and value of the page entries lives in two buffers, viewed per entry
      const kl = PAGE_PREFIX.byteLength + 32
      const kb = Buffer.allocUnsafe(n * kl)
      const vb = Buffer.allocUnsafe(n * LOCATION_BYTES)
      let o = 0
      let v = 0
      let last: { pack: number, d: { pages: number, bytes: number } } | undefined
      const loc = { pack: 0, offset: 0, length: 0 }
      this.pending.forEach((digest, at, pack, offset, length) => {
        PAGE_PREFIX.copy(kb, o)
        kb.set(digest.subarray(at, at + 32), o + PAGE_PREFIX.byteLength)
        loc.pack = pack
        loc.offset = offset
        loc.length = length
        writeLocation(vb, v, loc)
        batch.put(kb.subarray(o, o + kl) as any, vb.subarray(v, v + LOCATION_BYTES) as any, VIEW_OPTIONS as any)
        o += kl
        v += LOCATION_BYTES
        if (last?.pack !== pack) {
          const d = deltas.get(pack) ?? { pages: 0, bytes: 0 }
          deltas.set(pack, d)
          last = { pack, d }
        }
        last.d.pages++
        last.d.bytes += length
      })
      const updated = new Map<number, PackEntry>()
      for (const [id, size] of this.packs.takeWritten()) {
        const old = this.packs.entries.get(id) ?? { size: 0, livePages: 0, liveBytes: 0 }
        updated.set(id, { ...old, size: Math.max(old.size, size) })
      }
      for (const [id, d] of deltas) {
        const e = updated.get(id) ?? { ...(this.packs.entries.get(id) ?? { size: 0, livePages: 0, liveBytes: 0 }) }
        e.livePages += d.pages
        e.liveBytes += d.bytes
        updated.set(id, e)
      }
      for (const [id, e] of updated) batch.put(packKey(id), e as any, { sublevel: this.packsDb as any })
      for (const op of extra) {
        if (op.type === 'del') batch.del(op.key, op)
        else batch.put(op.key, op.value, op)
      }
      const added: CID[] = []
      if (n > 0 && this.hasListeners('pages:added')) {
        this.pending.forEach((d, at) => {
          const digest = d.slice(at, at + 32)
          if (quiet == null || !quiet.has(digestKey(digest))) added.push(digestToCid(digest))
        })
      }
      await batch.write({ sync })
      for (const [id, e] of updated) this.packs.entries.set(id, e)
      const table = this.table
      if (table != null) {
        this.pending.forEach((d, at, pack, offset, length) => { table.setFields(d, at, pack, offset, length) })
        this.checkTable()
      }
      this.pending.clear()
      this.pendingBlocks.clear()
      this.pendingBytes = 0
      if (added.length > 0) {
        this.dispatchEvent(new CustomEvent('pages:added', { detail: added }))
      }
    } finally {
      await batch.close()
    }
  }

  /** Read stored pages by location into `into` (at `at`). */
  async readAt (loc: PageLocation, into: Uint8Array, at = 0): Promise<void> {
    await this.packs.read(loc.pack, loc.offset, loc.length, into, at)
  }

  /** Manifest chunks of `root` in order, each decoded to its slots. */
  async * slotChunks (root: CID, options: AbortOptions = {}): AsyncGenerator<Slot[]> {
    for await (const { walk, entries } of this.manifestChunks(root, options)) {
      const out: Slot[] = []
      for (const e of entries) {
        if (typeof e === 'number') {
          for (let k = 0; k < e; k++) out.push({ index: walk.index, offset: walk.next(), length: walk.length, digest: null })
        } else {
          out.push({ index: walk.index, offset: walk.next(), length: walk.length, digest: e })
        }
      }
      yield out
    }
  }

  /**
   * {@link slotChunks} in typed arrays: for bulk readers (export) that would otherwise make
   * and keep an object and a digest view per slot while the chunk's pages are in flight.
   */
  async * slotArrays (root: CID, options: AbortOptions = {}): AsyncGenerator<SlotArrays> {
    for await (const { walk, entries } of this.manifestChunks(root, options)) {
      let count = 0
      for (const e of entries) count += typeof e === 'number' ? e : 1
      const out: SlotArrays = { count, digests: new Uint8Array(count * 32), zero: new Uint8Array(count), offsets: new Float64Array(count), lengths: new Uint32Array(count) }
      let i = 0
      for (const e of entries) {
        if (typeof e === 'number') {
          for (let k = 0; k < e; k++, i++) {
            out.zero[i] = 1
            out.offsets[i] = walk.next()
            out.lengths[i] = walk.length
          }
        } else {
          out.digests.set(e, i * 32)
          out.offsets[i] = walk.next()
          out.lengths[i] = walk.length
          i++
        }
      }
      yield out
    }
  }

  /** The manifest's chunks decoded, in order, with the cursor that places their slots in the image. */
  private async * manifestChunks (root: CID, options: AbortOptions): AsyncGenerator<{ walk: ExtentWalk, entries: Array<Uint8Array | number> }> {
    const m = await this.readManifest(root, options)
    const walk = new ExtentWalk(root, m)
    for (const c of m.chunks) {
      options.signal?.throwIfAborted()
      const bytes = await this.getBlock(c)
      if (bytes == null) throw new BlockNotFoundError(`manifest chunk ${c.toString()} of image ${root.toString()} is not in the store`)
      yield { walk, entries: decodeChunkDigests(c, bytes) }
    }
    if (walk.index !== m.pages) throw new ImageFormatError(`manifest ${root.toString()} lists ${walk.index} pages, expected ${m.pages}`)
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
      if (Buffer.from(d).equals(ZERO_DIGEST)) {
        out[i] = true
        return
      }
      ask.push(d)
      at.push(i)
    })
    const locs = await this.lookup(ask)
    locs.forEach((l, j) => { out[at[j]] = l != null })
    return out
  }

  async get (cid: CID, options: AbortOptions = {}): Promise<Uint8Array | undefined> {
    for await (const { bytes } of this.getMany([cid], options)) return bytes
    return undefined
  }

  async * getMany (cids: CID[], options: AbortOptions = {}): AsyncGenerator<{ cid: CID, bytes?: Uint8Array }> {
    this.checkOpen()
    const BATCH = 256
    for (let start = 0; start < cids.length; start += BATCH) {
      options.signal?.throwIfAborted()
      const batch = cids.slice(start, start + BATCH)
      const digests = batch.map(c => (isPageCid(c) ? c.multihash.digest : new Uint8Array(32)))
      const locs = await this.lookup(digests)
      const results = await Promise.all(batch.map(async (cid, i) => {
        if (!isPageCid(cid)) return undefined
        if (Buffer.from(digests[i]).equals(ZERO_DIGEST)) return new Uint8Array(PAGE_SIZE)
        const loc = locs[i]
        if (loc == null) return undefined
        const bytes = await this.readPage(cid, loc)
        return bytes
      }))
      for (let i = 0; i < batch.length; i++) {
        yield results[i] == null ? { cid: batch[i] } : { cid: batch[i], bytes: results[i] }
      }
    }
  }

  private async readPage (cid: CID, loc: PageLocation): Promise<Uint8Array | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        const bytes = new Uint8Array(loc.length)
        await this.readAt(loc, bytes)
        if (!verifyPage(cid, bytes)) {
          throw new PageVerificationError(`page ${cid.toString()} read from pack ${loc.pack} at ${loc.offset} does not match its CID`)
        }
        return bytes
      } catch (err: any) {
        // gc may have moved the page to another pack meanwhile
        if (attempt >= 2 || !['ENOENT', 'EBADF', 'ERR_SHORT_PACK'].includes(err.code)) throw err
        const [again] = await this.lookup([cid.multihash.digest])
        if (again == null) return undefined
        loc = again
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
      const locs = await this.lookup(list.map(p => p.cid.multihash.digest))
      const add = list.filter((_, i) => locs[i] == null)
      if (add.length === 0) return 0
      const digests = Buffer.allocUnsafe(add.length * 32)
      add.forEach((p, i) => { digests.set(p.cid.multihash.digest, i * 32) })
      await this.appendPages(digests, add.map((_, i) => i * 32), add.map(p => p.bytes), add.map(p => p.bytes.byteLength))
      await this.commitPending([], false, options.announce === false ? new Set(add.map(p => digestKey(p.cid.multihash.digest))) : undefined)
      return add.length
    })
  }

  async resolvePrefixes (prefixes: Uint8Array, options: AbortOptions = {}): Promise<Array<Uint8Array | undefined>> {
    this.checkOpen()
    const n = Math.floor(prefixes.byteLength / 8)
    // a peer pulling an image by prefix asks for much of the store, a request at a time: the
    // page table answers each prefix with one probe; it is loaded in the background (never
    // waited for here: its load takes the store lock) and released after PAGE_TABLE_IDLE_MS
    const table = this.table
    if (table != null) {
      this.tableUsers++
      clearTimeout(this.tableTimer)
      try {
        const out = new Array<Uint8Array | undefined>(n)
        for (let i = 0; i < n; i++) {
          const digest = new Uint8Array(32)
          out[i] = table.findPrefix(prefixes, i * 8, digest) ? digest : undefined
        }
        return out
      } finally {
        this.releaseTable()
      }
    }
    if (!this.tableLoading) {
      this.tableLoading = true
      this.useTable(this.livePages())
        .catch(err => { log.error('page table for prefixes not loaded - %e', err) })
        .finally(() => {
          this.tableLoading = false
          this.releaseTable()
        })
    }
    return this.resolvePrefixesInIndex(prefixes, n, options)
  }

  /** {@link resolvePrefixes} from level: a seek per prefix when they are few, else one scan of their key range. */
  private async resolvePrefixesInIndex (prefixes: Uint8Array, n: number, options: AbortOptions): Promise<Array<Uint8Array | undefined>> {
    const view = new DataView(prefixes.buffer, prefixes.byteOffset, n * 8)
    const asked = new BigUint64Array(n)
    for (let i = 0; i < n; i++) asked[i] = view.getBigUint64(i * 8)
    // distinct prefixes in key order (big-endian: numeric order is byte order), visited on one iterator
    const sorted = asked.slice().sort()
    const found = new Array<Uint8Array | undefined>(n)
    const end = Buffer.from(PAGE_PREFIX)
    end[end.byteLength - 1]++
    const skip = PAGE_PREFIX.byteLength
    const headOf = (key: Uint8Array): bigint => new DataView(key.buffer, key.byteOffset + skip, 8).getBigUint64(0)
    const it = this.db.keys<Uint8Array>({ gt: PAGE_PREFIX, lt: end, keyEncoding: VIEW })
    try {
      // pages held between the first and the last prefix asked, if digests are uniform
      const span = n === 0 ? 0 : Number(sorted[n - 1] - sorted[0]) / 2 ** 64
      if (prefixLookup(n, this.livePages() * span) === 'seek') {
        // few prefixes in a large index: a seek each
        const target = Buffer.alloc(skip + 8)
        PAGE_PREFIX.copy(target)
        for (let j = 0; j < n; j++) {
          options.signal?.throwIfAborted()
          if (j > 0 && sorted[j] === sorted[j - 1]) continue
          target.writeBigUInt64BE(sorted[j], skip)
          it.seek(target)
          const key = await it.next()
          if (key != null && headOf(key) === sorted[j]) found[j] = new Uint8Array(key.subarray(skip, skip + 32))
        }
      } else {
        // many: one pass over that part of the index in batches, merged with the sorted prefixes
        const start = Buffer.alloc(skip + 8)
        PAGE_PREFIX.copy(start)
        start.writeBigUInt64BE(sorted[0] ?? 0n, skip)
        it.seek(start)
        let j = 0
        while (j < n) {
          options.signal?.throwIfAborted()
          const keys = await it.nextv(SCAN_BATCH)
          if (keys.length === 0) break
          for (const key of keys) {
            const head = headOf(key)
            while (j < n && sorted[j] < head) j++
            if (j < n && sorted[j] === head) found[j] = new Uint8Array(key.subarray(skip, skip + 32))
            if (j === n) break
          }
        }
      }
    } finally {
      await it.close()
    }
    // back to the order asked: the first of equal sorted prefixes holds the answer
    const out = new Array<Uint8Array | undefined>(n)
    for (let i = 0; i < n; i++) {
      let lo = 0
      let hi = n - 1
      while (lo < hi) {
        const mid = (lo + hi) >>> 1
        if (sorted[mid] < asked[i]) lo = mid + 1
        else hi = mid
      }
      out[i] = found[lo]
    }
    return out
  }

  async * allPages (options: AbortOptions & { batchSize?: number } = {}): AsyncGenerator<CID[]> {
    this.checkOpen()
    const it = this.pagesDb.keys()
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
    const key = cid.toString()
    const pending = this.pendingBlocks.get(key)
    return pending != null ? pending.bytes : await this.blocks.get(cid)
  }

  async putBlock (cid: CID, bytes: Uint8Array, options: AbortOptions = {}): Promise<void> {
    this.checkOpen()
    options.signal?.throwIfAborted()
    if (!verifyBlock(cid, bytes)) throw new PageVerificationError(`block ${cid.toString()} does not match its bytes`)
    await this.blocks.put(cid, bytes)
  }

  async hasBlock (cid: CID, options: AbortOptions = {}): Promise<boolean> {
    this.checkOpen()
    options.signal?.throwIfAborted()
    const key = cid.toString()
    return this.pendingBlocks.has(key) || (await this.blocks.has(cid))
  }

  // ---- images ----

  async importImage (path: string, options: ImportOptions = {}): Promise<ImportResult> {
    this.checkOpen()
    return importImage(this, path, options)
  }

  async exportImage (ref: string | CID, outPath: string, options: ExportOptions = {}): Promise<void> {
    this.checkOpen()
    return exportImage(this, ref, outPath, options)
  }

  async resolve (ref: string | CID, options: AbortOptions = {}): Promise<CID> {
    this.checkOpen()
    options.signal?.throwIfAborted()
    let cid = typeof ref === 'string' ? undefined : CID.asCID(ref) ?? undefined
    if (typeof ref === 'string') {
      cid = parseCid(ref)
      if (cid == null) {
        if (!NAME_RE.test(ref)) throw new InvalidRefError(`invalid reference "${ref}": not a CID or an image name`)
        const root = await this.namesDb.get(ref)
        if (root == null) throw new RefNotFoundError(`no image named "${ref}"`)
        return CID.parse(root)
      }
    }
    if (cid == null) throw new InvalidRefError('invalid reference: not a CID or an image name')
    const key = cid.toString()
    if ((await this.pinsDb.has(key)) || (await this.hasBlock(cid))) return cid
    throw new RefNotFoundError(`no image ${key} in this store`)
  }

  async readManifest (root: CID, options: AbortOptions = {}): Promise<Manifest> {
    const bytes = await this.getBlock(root, options)
    if (bytes == null) throw new BlockNotFoundError(`manifest ${root.toString()} is not in the store`)
    return decodeRoot(root, bytes)
  }

  async * pageSlots (root: CID, options: AbortOptions = {}): AsyncGenerator<PageSlot> {
    this.checkOpen()
    for await (const slots of this.slotChunks(root, options)) {
      for (const s of slots) yield { index: s.index, offset: s.offset, length: s.length, cid: s.digest == null ? null : digestToCid(s.digest) }
    }
  }

  /** Count zero and distinct pages of an image; throws on the first page not in the store. */
  async countPages (root: CID, options: AbortOptions = {}): Promise<{ zeroPages: number, distinctPages: number }> {
    // distinct pages are distinct locations: every non-zero slot's location as a 64-bit key
    // (pack << 40 | offset; a pack is far below 1 TiB), sorted and counted — 8 bytes a slot,
    // freed on return, where a set of digests took 32 MiB at 4 GiB
    const m = await this.readManifest(root, options)
    const keys = new BigUint64Array(m.pages)
    let n = 0
    let zeroPages = 0
    try {
      for await (const { walk, entries } of this.manifestChunks(root, options)) {
        const digests: Uint8Array[] = []
        const offsets: number[] = []
        for (const e of entries) {
          if (typeof e === 'number') {
            zeroPages += e
            for (let k = 0; k < e; k++) walk.next()
            continue
          }
          offsets.push(walk.next())
          digests.push(e)
        }
        const locs = await this.lookup(digests)
        for (let i = 0; i < locs.length; i++) {
          const loc = locs[i]
          if (loc == null) {
            throw new PageNotFoundError(`page ${digestToCid(digests[i]).toString()} (image offset ${offsets[i]}) of image ${root.toString()} is not in the store`)
          }
          keys[n++] = (BigInt(loc.pack) << 40n) | BigInt(loc.offset)
        }
      }
      const held = keys.subarray(0, n).sort()
      let distinctPages = 0
      for (let i = 0; i < n; i++) {
        if (i === 0 || held[i] !== held[i - 1]) distinctPages++
      }
      return { zeroPages, distinctPages }
    } finally {
      release(keys)
    }
  }

  async pin (root: CID, options: PinOptions = {}): Promise<void> {
    this.checkOpen()
    if (options.name != null) validateName(options.name)
    await this.lock.run(async () => {
      const key = root.toString()
      const existing = await this.pinsDb.get(key)
      let record: PinRecord
      if (options.partial === true) {
        if (existing != null) {
          record = existing
        } else {
          let m: Manifest | undefined
          try {
            m = await this.readManifest(root, options)
          } catch (err) {
            if (!(err instanceof BlockNotFoundError)) throw err
          }
          record = { state: 'partial', createdAt: Date.now(), size: m?.size ?? 0, pages: m?.pages ?? 0, zeroPages: 0, distinctPages: 0, format: m?.format ?? 'raw' }
        }
      } else {
        const m = await this.readManifest(root, options)
        const counts = await this.countPages(root, options)
        record = { state: 'complete', createdAt: existing?.createdAt ?? Date.now(), size: m.size, pages: m.pages, zeroPages: counts.zeroPages, distinctPages: counts.distinctPages, format: m.format }
      }
      // a partial pin only guards pages in flight; completing it without a name pins explicitly
      record.explicit = existing?.explicit === true || (options.name == null && options.partial !== true)
      const ops: any[] = [{ type: 'put', sublevel: this.pinsDb, key, value: record }]
      if (options.name != null) ops.push(...await this.nameOps(options.name, key))
      // the blocks the pin refers to are durable before it is
      await this.blocks.sync()
      await this.db.batch(ops, { sync: true })
    })
  }

  async remove (ref: string | CID, options: AbortOptions = {}): Promise<void> {
    this.checkOpen()
    options.signal?.throwIfAborted()
    await this.lock.run(async () => {
      const names = await this.namesDb.iterator().all()
      const isName = typeof ref === 'string' && parseCid(ref) == null
      const ops: any[] = []
      if (isName) {
        if (!NAME_RE.test(ref)) throw new InvalidRefError(`invalid reference "${ref}": not a CID or an image name`)
        const root = names.find(([n]) => n === ref)?.[1]
        if (root == null) throw new RefNotFoundError(`no image named "${ref}"`)
        ops.push({ type: 'del', sublevel: this.namesDb, key: ref })
        if (await this.orphaned(root, ref, names)) ops.push({ type: 'del', sublevel: this.pinsDb, key: root })
      } else {
        const cid = typeof ref === 'string' ? CID.parse(ref) : ref
        const key = cid.toString()
        if (!(await this.pinsDb.has(key))) throw new RefNotFoundError(`image ${key} is not pinned`)
        ops.push({ type: 'del', sublevel: this.pinsDb, key })
        for (const [n, r] of names) if (r === key) ops.push({ type: 'del', sublevel: this.namesDb, key: n })
      }
      await this.db.batch(ops, { sync: true })
    })
  }

  /** Whether `root`'s pin is held by nothing once `name` no longer points at it. */
  private async orphaned (root: string, name: string, names: Array<[string, string]>): Promise<boolean> {
    if (names.some(([n, r]) => r === root && n !== name)) return false
    const rec = await this.pinsDb.get(root)
    return rec != null && rec.explicit !== true
  }

  /**
   * Index ops that point `name` at `rootKey`; when the name leaves another root that nothing
   * else holds (no other name, no explicit pin), that root's pin goes too, so gc can free it.
   * Call with the lock held.
   */
  async nameOps (name: string, rootKey: string): Promise<any[]> {
    const ops: any[] = [{ type: 'put', sublevel: this.namesDb, key: name, value: rootKey }]
    const old = await this.namesDb.get(name)
    if (old != null && old !== rootKey && await this.orphaned(old, name, await this.namesDb.iterator().all())) {
      ops.push({ type: 'del', sublevel: this.pinsDb, key: old })
    }
    return ops
  }

  private async namesByRoot (): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>()
    for await (const [n, r] of this.namesDb.iterator()) {
      const list = out.get(r) ?? []
      list.push(n)
      out.set(r, list)
    }
    return out
  }

  private info (key: string, rec: PinRecord, names: string[]): ImageInfo {
    return {
      root: CID.parse(key),
      names,
      format: rec.format,
      size: rec.size,
      pages: rec.pages,
      zeroPages: rec.zeroPages,
      distinctPages: rec.distinctPages,
      complete: rec.state === 'complete',
      createdAt: rec.createdAt
    }
  }

  async list (options: AbortOptions = {}): Promise<ImageInfo[]> {
    this.checkOpen()
    options.signal?.throwIfAborted()
    const names = await this.namesByRoot()
    const out: ImageInfo[] = []
    for await (const [k, rec] of this.pinsDb.iterator()) out.push(this.info(k, rec, names.get(k) ?? []))
    return out.sort((a, b) => a.createdAt - b.createdAt)
  }

  async inspect (ref: string | CID, options: AbortOptions = {}): Promise<ImageInfo> {
    const root = await this.resolve(ref, options)
    const key = root.toString()
    const rec = await this.pinsDb.get(key)
    if (rec == null) throw new RefNotFoundError(`image ${key} is not pinned`)
    const names = await this.namesByRoot()
    return this.info(key, rec, names.get(key) ?? [])
  }

  async gc (options: AbortOptions = {}): Promise<GcResult> {
    this.checkOpen()
    return collectGarbage(this, options)
  }

  async stats (options: AbortOptions = {}): Promise<StoreStats> {
    this.checkOpen()
    options.signal?.throwIfAborted()
    let images = 0
    let logicalBytes = 0
    let zeroPages = 0
    for await (const rec of this.pinsDb.values()) {
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
    return verifyStore(this, options)
  }
}
