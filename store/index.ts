/**
 * The content-addressed page store every memfabric host keeps.
 *
 * A repository directory holds the peer's config (identity, site, addresses) and a store of
 * 4 KiB memory pages named by CID, the manifest blocks that list an image's pages, and the
 * names and pins of images. Page bytes live in append-only pack files; level indexes them.
 *
 * @example
 * ```ts
 * const repo = await Repo.open('/var/lib/memfabric')
 * const { root } = await repo.store.importImage('/dev/shm/vm1.ram', { name: 'vm1' })
 * await repo.store.exportImage('vm1', '/tmp/vm1.ram')
 * await repo.close()
 * ```
 */
import type { CID } from 'multiformats/cid'
import type { AbortOptions } from '@libp2p/interface'

export * from './errors.ts'
export * from './constants.ts'
export * from './page.ts'

/** A page and its name. */
export interface Page {
  cid: CID
  bytes: Uint8Array
}

export interface PutOptions extends AbortOptions {
  /**
   * Every page's bytes were already hashed and found to match its CID by the caller (the page
   * client checks each page it receives): skip hashing them again. Only for bytes checked
   * against that very CID in this process; never for bytes read from a file or a peer and not
   * yet checked. A lie is not caught here (it is when the page is read back, which always
   * verifies), so an unverified page stored this way would be lost to every reader.
   */
  verified?: boolean
  /**
   * false: the pages are not reported in `pages:added`, so the node does not announce them at
   * once but at its next republish (for pages a same-site peer already announces).
   */
  announce?: boolean
}

/** Pages by CID. Zero pages are implicit: `has` says true, `putMany` skips them. */
export interface PageStore {
  /** For each CID, whether its page is held (in order). */
  has (cids: CID[], options?: AbortOptions): Promise<boolean[]>
  /** Page bytes, verified against the CID; `undefined` when not held. */
  get (cid: CID, options?: AbortOptions): Promise<Uint8Array | undefined>
  /** Pages in the order asked; `bytes` is `undefined` for a page not held. Verified. */
  getMany (cids: CID[], options?: AbortOptions): AsyncGenerator<{ cid: CID, bytes?: Uint8Array }>
  /**
   * Verify (unless `verified`) and store pages durably; returns how many were new. Throws
   * PageVerificationError.
   */
  putMany (pages: Page[], options?: PutOptions): Promise<number>
  /** Every stored page CID, in batches (for publishing provider records). */
  allPages (options?: AbortOptions & { batchSize?: number }): AsyncGenerator<CID[]>
  /**
   * For each 8-byte prefix (`prefixes` holds n of them), the digest of a held page that starts
   * with it, or undefined. Which page, when several match, is unspecified.
   */
  resolvePrefixes? (prefixes: Uint8Array, options?: AbortOptions): Promise<Array<Uint8Array | undefined>>
}

/** Manifest blocks (dag-cbor), verified against their CID. */
export interface BlockStore {
  getBlock (cid: CID, options?: AbortOptions): Promise<Uint8Array | undefined>
  putBlock (cid: CID, bytes: Uint8Array, options?: AbortOptions): Promise<void>
  hasBlock (cid: CID, options?: AbortOptions): Promise<boolean>
}

/** One contiguous byte range of an image, paged from its own start. */
export interface Extent {
  offset: number
  length: number
}

/** The decoded manifest root of an image. */
export interface Manifest {
  root: CID
  format: 'raw' | 'elf'
  size: number
  pageSize: number
  /** Byte ranges that partition [0, size); each is paged from its own start. */
  extents: Extent[]
  /** Page slots in all extents (zero pages included). */
  pages: number
  /** Chunk blocks listing page CIDs in order, across extents. */
  chunks: CID[]
  /**
   * How the chunks were cut, when not by the format's defaults (DEFAULT_CHUNK_* in
   * store/options.ts). Recorded in the root only then, so default roots are unchanged; a
   * rebuild of the manifest (from a basis or a thin manifest) cuts with these.
   */
  chunking?: { modulus: number, min: number, max: number }
}

/** One page slot of an image: `cid` is `null` for an all-zero page. */
export interface PageSlot {
  index: number
  offset: number
  length: number
  cid: CID | null
}

export interface ImageInfo {
  root: CID
  names: string[]
  format: 'raw' | 'elf'
  size: number
  pages: number
  zeroPages: number
  /** Distinct non-zero pages the image references. */
  distinctPages: number
  /** False while a migration into this repo is still fetching its pages. */
  complete: boolean
  createdAt: number
  /** Peer id of the fabric member whose migration created it; undefined: local (see PinRecord.creator). */
  creator?: string
}

export interface ImportResult {
  root: CID
  size: number
  pages: number
  zeroPages: number
  /** Pages that were not in the store before this import. */
  newPages: number
  format: 'raw' | 'elf'
}

export interface ProgressEvent {
  done: number
  total: number
}

export interface ImportOptions extends AbortOptions {
  name?: string
  onProgress?(evt: ProgressEvent): void
}

export interface ExportOptions extends AbortOptions {
  onProgress?(evt: ProgressEvent): void
}

export interface PinOptions extends AbortOptions {
  name?: string
  /** Pin an image whose pages are still arriving (protects them from gc). */
  partial?: boolean
  /**
   * Pin on behalf of this fabric member (peer id; default: the local user). Such a pin only
   * adds: a name held by an image another party created is refused (`ERR_NAME_TAKEN`).
   */
  creator?: string
}

export interface StoreStats {
  images: number
  /** Sum of image sizes. */
  logicalBytes: number
  zeroPages: number
  distinctPages: number
  /** Page bytes in pack files that are referenced by the index. */
  storedBytes: number
  /** Bytes of pack files on disk (live and dead). */
  packBytes: number
  /** logicalBytes / storedBytes. */
  dedupRatio: number
}

export interface GcResult {
  removedPages: number
  reclaimedBytes: number
}

export interface VerifyResult {
  ok: boolean
  images: number
  pagesChecked: number
  problems: string[]
}

export interface StoreEvents {
  'pages:added': CustomEvent<CID[]>
  'pages:removed': CustomEvent<CID[]>
}

/**
 * The slots of one manifest chunk in typed arrays (no object per slot): slot i is at image
 * offset `offsets[i]`, `lengths[i]` long, and holds the page with digest
 * `digests[i * 32, i * 32 + 32)`, or a zero page when `zero[i]` is 1 (its digest bytes are 0).
 */
export interface SlotArrays {
  count: number
  digests: Uint8Array
  zero: Uint8Array
  offsets: Float64Array
  lengths: Uint32Array
}

/**
 * The whole store of a repository.
 *
 * Names and pins: a pinned image is kept (gc never frees its pages). A pin is held by the
 * image's names and, when it was imported or pinned without a name, by an explicit pin.
 * Importing or pinning with a name that already names another image moves the name; the image
 * it left keeps its pin only while another name or an explicit pin still holds it, so a name
 * repointed to each new snapshot does not leave the old ones pinned and unnamed for ever. A
 * partial pin (an image still arriving) is not explicit until completed without a name.
 */
export interface Store extends PageStore, BlockStore, EventTarget {
  importImage (path: string, options?: ImportOptions): Promise<ImportResult>
  exportImage (ref: string | CID, outPath: string, options?: ExportOptions): Promise<void>
  /** Resolve a name or CID string to a root CID. Throws RefNotFoundError / InvalidRefError. */
  resolve (ref: string | CID, options?: AbortOptions): Promise<CID>
  readManifest (root: CID, options?: AbortOptions): Promise<Manifest>
  /** Every page slot of an image in order; reads manifest blocks from this store. */
  pageSlots (root: CID, options?: AbortOptions): AsyncGenerator<PageSlot>
  /** {@link pageSlots} a manifest chunk at a time, in typed arrays (no object per slot). */
  slotArrays (root: CID, options?: AbortOptions): AsyncGenerator<SlotArrays>
  /**
   * Pin an image, complete (every page must be here) or `partial`. With `name`, the name points
   * here (see {@link Store} on names and pins); without one (and not partial) the pin is explicit.
   */
  pin (root: CID, options?: PinOptions): Promise<void>
  /**
   * For a name: remove the name, and the pin when nothing else holds it (no other name, no
   * explicit pin). For a CID: remove the pin and every name of it.
   */
  remove (ref: string | CID, options?: AbortOptions): Promise<void>
  /**
   * Remove `root`'s pin and names only if fabric member `creator` created it (a live round
   * superseding its own previous round); returns whether it did.
   */
  release (root: CID, creator: string, options?: AbortOptions): Promise<boolean>
  list (options?: AbortOptions): Promise<ImageInfo[]>
  inspect (ref: string | CID, options?: AbortOptions): Promise<ImageInfo>
  gc (options?: AbortOptions): Promise<GcResult>
  stats (options?: AbortOptions): Promise<StoreStats>
  verify (options?: AbortOptions & { deep?: boolean }): Promise<VerifyResult>
}

export interface RepoConfig {
  /** base64 protobuf of the libp2p private key (Ed25519). */
  identity: { peerId: string, privateKey: string }
  site: string
  addresses: { listen: string[], api: string }
  bootstrap: string[]
  /** `mdns`: LAN discovery on/off; unset: on when listening beyond loopback. */
  discovery?: { mdns?: boolean }
}

export { Repo, loadPrivateKey } from './repo.ts'
export type { RepoInitOptions } from './repo.ts'
export * from './options.ts'
