/**
 * The store's internal contracts: what import, export, gc and verify receive from the store
 * instead of the whole `LevelPackStore`. {@link StoreInternals} is the set of parts the
 * store is composed of; each operation takes the {@link Pick} of it that it uses.
 */
import type { CID } from 'multiformats/cid'
import type { AbortOptions } from '@libp2p/interface'
import type { BlockFiles } from './block-files.ts'
import type { Hasher } from './hasher.ts'
import type { Leases } from './leases.ts'
import type { ManifestReader } from './manifest-reader.ts'
import type { Mutex } from './mutex.ts'
import type { ResolvedStoreOptions } from './options.ts'
import type { Packs } from './pack.ts'
import type { PageIndex } from './page-index.ts'
import type { PageTableCache } from './page-table-cache.ts'
import type { PendingWrites } from './pending.ts'
import type { Refs } from './refs.ts'
import type { IndexDb } from './schema.ts'
import type { StoreEvents } from './index.ts'

/** Manifest blocks as the store serves them: pending ones included, closed store refused. */
export interface BlockReader {
  getBlock (cid: CID, options?: AbortOptions): Promise<Uint8Array | undefined>
  hasBlock (cid: CID, options?: AbortOptions): Promise<boolean>
}

/** Where the store's page events go. */
export interface PageEvents {
  /** Whether anyone may be listening for `type` (building the event costs more than hashing). */
  hasListeners (type: keyof StoreEvents): boolean
  dispatchEvent (event: Event): boolean
}

export interface StoreInternals {
  readonly options: ResolvedStoreOptions
  /** The level index and its sublevels. */
  readonly index: IndexDb
  /** Pack files of page bytes. */
  readonly packs: Packs
  /** Manifest block files (committed ones only: see {@link blocks}). */
  readonly blockFiles: BlockFiles
  readonly blocks: BlockReader
  readonly hasher: Hasher
  /** Held by every step that reads presence and then writes pages, pins or names; gc holds it throughout. */
  readonly lock: Mutex
  readonly leases: Leases
  /** Pages and blocks written but not committed yet. */
  readonly pending: PendingWrites
  /** Where each page is stored. */
  readonly pages: PageIndex
  /** The page index in memory, when loaded. */
  readonly tables: PageTableCache
  readonly manifests: ManifestReader
  /** Names and pins. */
  readonly refs: Refs
  readonly events: PageEvents
  /** Throw StoreClosedError once the store is closed. */
  checkOpen (): void
}

export type ImportContext = Pick<StoreInternals, 'options' | 'index' | 'hasher' | 'lock' | 'leases' | 'pending' | 'pages' | 'tables' | 'refs' | 'checkOpen'>
export type ExportContext = Pick<StoreInternals, 'options' | 'packs' | 'hasher' | 'pages' | 'tables' | 'manifests' | 'refs'>
export type GcContext = Pick<StoreInternals, 'options' | 'index' | 'packs' | 'blockFiles' | 'blocks' | 'lock' | 'leases' | 'pending' | 'tables' | 'events' | 'checkOpen'>
export type VerifyContext = Pick<StoreInternals, 'index' | 'packs' | 'pages' | 'manifests'>
