/**
 * Leases: what writers in progress (an import) need kept through a gc that runs meanwhile —
 * the digests of the pages they appended or found, and the manifest blocks they made.
 */
import { PageTable } from './page-table.ts'

/** Digests and blocks an in-progress import (or other writer) needs kept through a gc. */
export interface Lease {
  /** Page digests (a set: locations unused). */
  pages: PageTable
  blocks: Set<string>
}

export class Leases implements Iterable<Lease> {
  private readonly held = new Set<Lease>()

  /** Register digests/blocks to keep through a gc; give it back with {@link drop}. */
  take (): Lease {
    const l: Lease = { pages: new PageTable(0, { locations: false }), blocks: new Set() }
    this.held.add(l)
    return l
  }

  drop (lease: Lease): void {
    this.held.delete(lease)
  }

  [Symbol.iterator] (): Iterator<Lease> {
    return this.held.values()
  }
}
