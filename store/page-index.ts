/**
 * Where each page is: pending pages first, then the page table when loaded, else the level
 * index (one key buffer and one getMany for a whole lookup); and reading a page back, verified.
 */
import type { CID } from 'multiformats/cid'
import { PageVerificationError } from './errors.ts'
import { decodeLocation } from './pack.ts'
import type { PageLocation, Packs } from './pack.ts'
import { verifyPage } from './page.ts'
import { PAGE_KEY_BYTES, VIEW, writePageKey } from './schema.ts'
import type { IndexDb } from './schema.ts'
import type { PageTableCache } from './page-table-cache.ts'
import type { PendingWrites } from './pending.ts'

/** Error codes of a pack read that gc may have caused by moving the page meanwhile. */
export const MOVED_CODES = ['ENOENT', 'EBADF', 'ERR_SHORT_PACK']

export interface PageIndexComponents {
  index: IndexDb
  packs: Packs
  pending: PendingWrites
  tables: PageTableCache
}

export class PageIndex {
  private readonly components: PageIndexComponents

  constructor (components: PageIndexComponents) {
    this.components = components
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

  /**
   * {@link lookup} of the digests `buf[at[j], at[j] + 32)`: pending pages, then the page table
   * when loaded, else one key buffer and one level getMany for the lot.
   */
  async locate (buf: Uint8Array, at: number[]): Promise<Array<PageLocation | undefined>> {
    const n = at.length
    const out = new Array<PageLocation | undefined>(n).fill(undefined)
    const ask: number[] = []
    const pending = this.components.pending.pages.size > 0 ? this.components.pending.pages : undefined
    const table = this.components.tables.table
    for (let j = 0; j < n; j++) {
      const p = pending?.get(buf, at[j])
      if (p != null) out[j] = p
      else if (table != null) out[j] = table.get(buf, at[j])
      else ask.push(j)
    }
    if (ask.length > 0) {
      const kb = Buffer.allocUnsafe(ask.length * PAGE_KEY_BYTES)
      const keys = new Array<Uint8Array>(ask.length)
      for (let q = 0; q < ask.length; q++) keys[q] = writePageKey(kb, q * PAGE_KEY_BYTES, buf, at[ask[q]])
      const values = await this.components.index.db.getMany<Uint8Array, Uint8Array>(keys, { keyEncoding: VIEW, valueEncoding: VIEW })
      for (let q = 0; q < values.length; q++) {
        const v = values[q]
        if (v != null) out[ask[q]] = decodeLocation(v)
      }
    }
    return out
  }

  /** Read stored pages by location into `into` (at `at`). */
  async readAt (loc: PageLocation, into: Uint8Array, at = 0): Promise<void> {
    await this.components.packs.read(loc.pack, loc.offset, loc.length, into, at)
  }

  /**
   * The bytes of page `cid` stored at `loc`, verified; looked up again when gc moved it
   * meanwhile, `undefined` when it is gone. Throws PageVerificationError.
   */
  async read (cid: CID, loc: PageLocation): Promise<Uint8Array | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        const bytes = new Uint8Array(loc.length)
        await this.readAt(loc, bytes)
        if (!verifyPage(cid, bytes)) {
          throw new PageVerificationError(`page ${cid.toString()} read from pack ${loc.pack} at ${loc.offset} does not match its CID`)
        }
        return bytes
      } catch (err: any) {
        if (attempt >= 2 || !MOVED_CODES.includes(err.code)) throw err
        const [again] = await this.lookup([cid.multihash.digest])
        if (again == null) return undefined
        loc = again
      }
    }
  }
}
