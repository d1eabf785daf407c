/**
 * When the store holds its page index in memory (a {@link PageTable}): loaded for a bulk
 * operation that touches a large part of the store, kept in step with every index batch, and
 * dropped once no operation has used it for {@link PAGE_TABLE_IDLE_MS}.
 */
import { logger } from '@libp2p/logger'
import { decodeLocation } from './pack.ts'
import type { PageLocation, Packs } from './pack.ts'
import { PageTable } from './page-table.ts'
import { PAGE_KEYS_END, PAGE_PREFIX, VIEW } from './schema.ts'
import type { IndexDb } from './schema.ts'
import type { Mutex } from './mutex.ts'

const log = logger('memfabric:store')

/** Idle time after which the page table of a finished bulk operation is dropped (ms). */
export const PAGE_TABLE_IDLE_MS = 10_000

export interface PageTableCacheComponents {
  index: IndexDb
  packs: Packs
  lock: Mutex
  /** Most pages the table may hold (`pageTableMaxPages`); 0 or less: never load it. */
  maxPages: number
}

export class PageTableCache {
  /**
   * The committed page index in memory, once a bulk operation asked for it (see {@link use});
   * kept in step with every index batch. Pending pages are not in it.
   */
  table?: PageTable
  private readonly components: PageTableCacheComponents
  /** Operations between use and release. */
  private users = 0
  /** A background load (see {@link loadInBackground}) is running. */
  private loading = false
  private timer?: ReturnType<typeof setTimeout>

  constructor (components: PageTableCacheComponents) {
    this.components = components
  }

  /**
   * Load the page table before an operation that looks up about `expected` pages, when that
   * pays: a scan of the index costs about half a lookup per indexed page, so only when the
   * operation touches at least half as many pages as the store holds (or the table is already
   * loaded), and never past `pageTableMaxPages`. Takes the lock: do not call with it held.
   */
  async use (expected: number): Promise<void> {
    this.users++
    clearTimeout(this.timer)
    if (this.table != null) return
    const max = this.components.maxPages
    const live = this.components.packs.livePages()
    if (max <= 0 || live > max || expected * 2 < live) return
    await this.components.lock.run(async () => {
      if (this.table != null) return
      const table = new PageTable(this.components.packs.livePages())
      const it = this.components.index.db.iterator<Uint8Array, Uint8Array>({ gt: PAGE_PREFIX, lt: PAGE_KEYS_END, keyEncoding: VIEW, valueEncoding: VIEW })
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
   * Called once per {@link use} when that operation ends: once no operation has used the
   * table for PAGE_TABLE_IDLE_MS it is dropped, so a long-running daemon does not keep up to
   * `pageTableMaxPages` entries (~49 MB) between migrations, while an export right after an
   * import still finds it; the next bulk operation reloads it.
   */
  release (): void {
    this.users = Math.max(0, this.users - 1)
    if (this.users > 0 || this.table == null) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      if (this.users > 0 || this.table == null) return
      log('page table released at %d pages', this.table.size)
      this.table = undefined
    }, PAGE_TABLE_IDLE_MS)
    this.timer.unref()
  }

  /** The table when loaded, in use (as by {@link use}) until {@link release}; else undefined, at once. */
  borrow (): PageTable | undefined {
    const table = this.table
    if (table == null) return undefined
    this.users++
    clearTimeout(this.timer)
    return table
  }

  /** Load the table for the whole store in the background (never waited for: it takes the lock). */
  loadInBackground (): void {
    if (this.loading) return
    this.loading = true
    this.use(this.components.packs.livePages())
      .catch(err => { log.error('page table for prefixes not loaded - %e', err) })
      .finally(() => {
        this.loading = false
        this.release()
      })
  }

  /** Record committed pages (call after their batch committed), then keep the table in its bound. */
  addCommitted (pages: PageTable): void {
    const table = this.table
    if (table == null) return
    pages.forEach((d, at, pack, offset, length) => { table.setFields(d, at, pack, offset, length) })
    if (table.size > this.components.maxPages) {
      log('page table dropped at %d pages', table.size)
      this.table = undefined
    }
  }

  /** Record a committed move of a page (call after the batch committed). */
  set (digest: Uint8Array, loc: PageLocation): void {
    this.table?.set(digest, 0, loc)
  }

  /** Record a committed removal of a page. */
  delete (digest: Uint8Array): void {
    this.table?.delete(digest, 0)
  }

  /** Stop the idle timer (the store is closing). */
  close (): void {
    clearTimeout(this.timer)
  }
}
