/**
 * The level schema of a store's index (`<repo>/index`): one sublevel per record type, each
 * with an explicit encoding, the codec of page keys, and typed batch operations so entries of
 * several sublevels commit in one atomic batch.
 *
 * Sublevels:
 * - `pages`   32-byte sha-256 digest → pack id, offset, length (12 bytes)
 * - `names`   image name → root CID
 * - `pins`    root CID → {@link PinRecord}
 * - `packs`   pack id → {@link PackEntry} (committed size, live pages and bytes)
 * - `imports` in-progress import id → {@link ImportRecord}: left behind only by a crash
 * - `blocks`  manifest block CID → block bytes: an older layout, moved to files on open
 *
 * Page keys are written on the root database with the `pages` sublevel's own prefix:
 * classic-level's getMany through a sublevel is ~10x slower than on the root (measured here).
 */
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { CID } from 'multiformats/cid'
import { logger } from '@libp2p/logger'
import type { AbstractBatchOperation, AbstractChainedBatch, AbstractSublevel } from 'abstract-level'
import { RepoCorruptError, RepoLockedError } from './errors.ts'
import { encodeLocation, packKey } from './pack.ts'
import type { PackEntry, PageLocation } from './pack.ts'
import type { BlockFiles } from './block-files.ts'

const log = logger('memfabric:store')

export type IndexLevel = ClassicLevel<string, string>
export type Sub<K, V> = AbstractSublevel<IndexLevel, string | Buffer | Uint8Array, K, V>

export interface PinRecord {
  state: 'complete' | 'partial'
  /**
   * Pinned without a name (an import or `pin` with no name): then the pin stays when its last
   * name is removed or moved. Absent in records written before this field existed: false.
   */
  explicit?: boolean
  /**
   * Peer id of the fabric member whose migration created the image; absent: the local user
   * (the CLI, an import), and every record written before this field existed. A root pinned
   * by two parties counts as local: only the operator removes it then.
   */
  creator?: string
  createdAt: number
  size: number
  pages: number
  zeroPages: number
  distinctPages: number
  format: 'raw' | 'elf'
}

/** An import in progress (removed when it pins or fails; found on open only after a crash). */
export interface ImportRecord {
  pid: number
  startedAt: number
  path: string
}

type IndexKey = string | Uint8Array
type IndexValue = string | Uint8Array | PinRecord | PackEntry | ImportRecord

/** One operation of an index batch, on the root (page keys) or on a sublevel. */
export type IndexOp = AbstractBatchOperation<IndexLevel, IndexKey, IndexValue>

export const PAGE_PREFIX = Buffer.from('!pages!')
/** Bytes of a page key: the prefix and a 32-byte digest. */
export const PAGE_KEY_BYTES = PAGE_PREFIX.byteLength + 32
/** The first key past every page key (the upper bound of a scan of the page index). */
export const PAGE_KEYS_END = Buffer.from(PAGE_PREFIX)
PAGE_KEYS_END[PAGE_KEYS_END.byteLength - 1]++

export const VIEW = 'view'
export const VIEW_OPTIONS = { keyEncoding: VIEW, valueEncoding: VIEW }

/** Write the page key of the digest `digest[at, at + 32)` into `into` at `o`; returns a view of it. */
export function writePageKey (into: Buffer, o: number, digest: Uint8Array, at = 0): Buffer {
  PAGE_PREFIX.copy(into, o)
  into.set(digest.subarray(at, at + 32), o + PAGE_PREFIX.byteLength)
  return into.subarray(o, o + PAGE_KEY_BYTES)
}

export function pageKey (digest: Uint8Array): Buffer {
  return writePageKey(Buffer.allocUnsafe(PAGE_KEY_BYTES), 0, digest)
}

export function putPageOp (digest: Uint8Array, loc: PageLocation): IndexOp {
  return { type: 'put', key: pageKey(digest), value: encodeLocation(loc), keyEncoding: VIEW, valueEncoding: VIEW }
}

export function delPageOp (digest: Uint8Array): IndexOp {
  return { type: 'del', key: pageKey(digest), keyEncoding: VIEW }
}

/** Queue `op` on a chained batch. */
export function queueOp (batch: AbstractChainedBatch<IndexLevel, string, string>, op: IndexOp): void {
  if (op.type === 'del') batch.del<IndexKey>(op.key, { keyEncoding: op.keyEncoding, sublevel: op.sublevel })
  else batch.put<IndexKey, IndexValue>(op.key, op.value, { keyEncoding: op.keyEncoding, valueEncoding: op.valueEncoding, sublevel: op.sublevel })
}

/** The index database of one repository and its sublevels. */
export class IndexDb {
  readonly dir: string
  readonly db: IndexLevel
  readonly pages: Sub<Uint8Array, Uint8Array>
  readonly names: Sub<string, string>
  readonly pins: Sub<string, PinRecord>
  readonly packs: Sub<string, PackEntry>
  readonly imports: Sub<string, ImportRecord>
  /** Where manifest blocks were kept before they moved to files; emptied on open. */
  private readonly legacyBlocks: Sub<string, Uint8Array>

  /** The index of repository `dir` (not opened yet). */
  constructor (dir: string) {
    this.dir = dir
    this.db = new ClassicLevel<string, string>(join(dir, 'index'), {
      keyEncoding: 'utf8',
      valueEncoding: 'utf8',
      // keys are digests and values pack offsets: snappy only costs CPU; uncompressed blocks
      // are read from the mapped tables, so LevelDB's block cache (default 8 MiB) holds little
      compression: false,
      cacheSize: 1024 * 1024
    })
    this.pages = this.db.sublevel<Uint8Array, Uint8Array>('pages', { keyEncoding: 'view', valueEncoding: 'view' })
    this.legacyBlocks = this.db.sublevel<string, Uint8Array>('blocks', { keyEncoding: 'utf8', valueEncoding: 'view' })
    this.names = this.db.sublevel<string, string>('names', { keyEncoding: 'utf8', valueEncoding: 'utf8' })
    this.pins = this.db.sublevel<string, PinRecord>('pins', { keyEncoding: 'utf8', valueEncoding: 'json' })
    this.packs = this.db.sublevel<string, PackEntry>('packs', { keyEncoding: 'utf8', valueEncoding: 'json' })
    this.imports = this.db.sublevel<string, ImportRecord>('imports', { keyEncoding: 'utf8', valueEncoding: 'json' })
  }

  /** Open the database. Throws RepoLockedError when another process has it open, else RepoCorruptError. */
  async open (): Promise<void> {
    try {
      await this.db.open()
    } catch (err: any) {
      if (err.cause?.code === 'LEVEL_LOCKED' || err.code === 'LEVEL_LOCKED') {
        throw new RepoLockedError(`repository ${this.dir} is in use by another process (its index is locked)`)
      }
      throw new RepoCorruptError(`cannot open the index of ${this.dir}: ${err.message}`, { cause: err })
    }
  }

  async close (): Promise<void> {
    await this.db.close()
  }

  /** Commit `ops` in one atomic batch. */
  async write (ops: IndexOp[], sync = false): Promise<void> {
    await this.db.batch(ops, { sync })
  }

  /** Move manifest blocks of an older repository from the index to files (durably, then delete them here). */
  async moveLegacyBlocks (blocks: BlockFiles): Promise<void> {
    let moved = 0
    while (true) {
      const entries = await this.legacyBlocks.iterator({ limit: 1024 }).all()
      if (entries.length === 0) break
      for (const [key, bytes] of entries) await blocks.put(CID.parse(key), bytes)
      await blocks.sync()
      await this.legacyBlocks.batch(entries.map(([key]) => ({ type: 'del' as const, key })))
      moved += entries.length
    }
    if (moved > 0) log('moved %d manifest blocks from the index to %s', moved, blocks.dir)
  }

  /** Every pack's committed entry. */
  async packEntries (): Promise<Map<number, PackEntry>> {
    const entries = new Map<number, PackEntry>()
    for await (const [k, v] of this.packs.iterator()) entries.set(Number(k), v)
    return entries
  }

  putPin (root: string, record: PinRecord): IndexOp {
    return { type: 'put', sublevel: this.pins, key: root, value: record }
  }

  delPin (root: string): IndexOp {
    return { type: 'del', sublevel: this.pins, key: root }
  }

  putName (name: string, root: string): IndexOp {
    return { type: 'put', sublevel: this.names, key: name, value: root }
  }

  delName (name: string): IndexOp {
    return { type: 'del', sublevel: this.names, key: name }
  }

  putPack (id: number, entry: PackEntry): IndexOp {
    return { type: 'put', sublevel: this.packs, key: packKey(id), value: entry }
  }

  delPack (id: number): IndexOp {
    return { type: 'del', sublevel: this.packs, key: packKey(id) }
  }

  delImport (id: string): IndexOp {
    return { type: 'del', sublevel: this.imports, key: id }
  }
}
