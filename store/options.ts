/**
 * Tunables of the on-disk store, each with its default. The CLI and daemon reuse these.
 */

/** A pack file is closed and a new one started once it would grow past this size. */
export const DEFAULT_PACK_SIZE = 256 * 1024 * 1024

/** Bytes read from an input image per read call (a multiple of the page size). */
export const DEFAULT_READ_CHUNK = 8 * 1024 * 1024

/** Read chunks being read and hashed ahead of the one being stored. */
export const DEFAULT_READ_AHEAD = 4

/** New page bytes an import appends before it syncs the pack and commits the index. */
export const DEFAULT_COMMIT_BYTES = 128 * 1024 * 1024

/** Worker threads that hash pages (0 hashes on the calling thread). */
export const DEFAULT_HASH_WORKERS = 2

/** Page slots per export batch (one index lookup, coalesced pack reads, one verify). */
export const DEFAULT_EXPORT_BATCH = 2048

/** Export batches in flight at once. */
export const DEFAULT_EXPORT_CONCURRENCY = 2

/** Page slots per export batch run on the calling thread (`exportWorkers: false`): a few ms each. */
export const INLINE_EXPORT_BATCH = 512

/** gc rewrites a pack whose live bytes fall below this fraction of its size. */
export const DEFAULT_COMPACT_THRESHOLD = 0.6

/** Content-defined chunking of a manifest: a chunk ends after a page whose digest prefix mod this is 0. */
export const DEFAULT_CHUNK_MODULUS = 1024

/** Fewest entries in a manifest chunk before a content-defined boundary may end it. */
export const DEFAULT_CHUNK_MIN = 64

/** Most entries in a manifest chunk. */
export const DEFAULT_CHUNK_MAX = 4096

/**
 * Most pages the in-memory page table (a cache of the page index, 47 bytes per slot, 1.4-2.9
 * slots per page) may hold; past this the store looks pages up in level alone. The default
 * (2 GiB of distinct pages) caps the table at 2^20 slots, 49 MB; 0 disables the table. Once a
 * bulk import or export has loaded it, the table stays until the store closes or outgrows this.
 */
export const DEFAULT_PAGE_TABLE_MAX_PAGES = 512 * 1024

export interface StoreOptions {
  /** Default {@link DEFAULT_PACK_SIZE}. */
  packSize?: number
  /** Default {@link DEFAULT_READ_CHUNK}. */
  readChunk?: number
  /** Default {@link DEFAULT_READ_AHEAD}. */
  readAhead?: number
  /** Default {@link DEFAULT_COMMIT_BYTES}. */
  commitBytes?: number
  /** Default {@link DEFAULT_HASH_WORKERS}. */
  hashWorkers?: number
  /** Default {@link DEFAULT_EXPORT_BATCH}. */
  exportBatch?: number
  /** Default {@link DEFAULT_EXPORT_CONCURRENCY}. */
  exportConcurrency?: number
  /**
   * Run export batches on the hash workers (default), or on the calling thread one at a time,
   * {@link INLINE_EXPORT_BATCH} slots each: slower, but no worker isolates (~28 MB) for an
   * export, which a daemon writing a pulled image can do without.
   */
  exportWorkers?: boolean
  /** Default {@link DEFAULT_COMPACT_THRESHOLD}. */
  compactThreshold?: number
  /** Default {@link DEFAULT_CHUNK_MODULUS}. */
  chunkModulus?: number
  /** Default {@link DEFAULT_CHUNK_MIN}. */
  chunkMin?: number
  /** Default {@link DEFAULT_CHUNK_MAX}. */
  chunkMax?: number
  /** Default {@link DEFAULT_PAGE_TABLE_MAX_PAGES}. */
  pageTableMaxPages?: number
}

export type ResolvedStoreOptions = Required<StoreOptions>

export function resolveStoreOptions (options: StoreOptions = {}): ResolvedStoreOptions {
  return {
    packSize: options.packSize ?? DEFAULT_PACK_SIZE,
    readChunk: options.readChunk ?? DEFAULT_READ_CHUNK,
    readAhead: options.readAhead ?? DEFAULT_READ_AHEAD,
    commitBytes: options.commitBytes ?? DEFAULT_COMMIT_BYTES,
    hashWorkers: options.hashWorkers ?? DEFAULT_HASH_WORKERS,
    exportBatch: options.exportBatch ?? DEFAULT_EXPORT_BATCH,
    exportConcurrency: options.exportConcurrency ?? DEFAULT_EXPORT_CONCURRENCY,
    exportWorkers: options.exportWorkers ?? true,
    compactThreshold: options.compactThreshold ?? DEFAULT_COMPACT_THRESHOLD,
    chunkModulus: options.chunkModulus ?? DEFAULT_CHUNK_MODULUS,
    chunkMin: options.chunkMin ?? DEFAULT_CHUNK_MIN,
    chunkMax: options.chunkMax ?? DEFAULT_CHUNK_MAX,
    pageTableMaxPages: options.pageTableMaxPages ?? DEFAULT_PAGE_TABLE_MAX_PAGES
  }
}
