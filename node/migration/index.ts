/**
 * Migration: the destination fetches every page of an image from the nearest holder.
 *
 * For each window of pages it still lacks, the puller asks its own store, then same-site peers
 * (presence query), then peers elsewhere (batched DHT provider lookup, nearest by RTT), and only
 * then the source. Holders that fail, stall or lie are dropped and their pages re-planned.
 *
 * @example
 * ```ts
 * const report = await pullImage(deps, { root, source, name: 'vm1', out: '/vms/vm1.ram' })
 * report.tiers.site.pages // pages that came from the destination's own site
 * ```
 */
import type { CID } from 'multiformats/cid'
import type { PeerId } from '@libp2p/interface'
import type { Page, Store } from '../../store/index.ts'
import type { ManifestPatch, ThinManifest } from '../../protocols/pages/index.ts'
import type { TimelinePhase } from './timeline.ts'
export type { TimelinePhase, PhaseName } from './timeline.ts'
export { formatTimeline } from './timeline.ts'

export type Tier = 'local' | 'site' | 'remote' | 'source'
export const TIERS: Tier[] = ['local', 'site', 'remote', 'source']

export interface TierFigures {
  pages: number
  /** Page bytes delivered (uncompressed). */
  bytes: number
  /** Bytes received on the wire from this tier. */
  wireBytes: number
}

export interface MigrationProgress {
  phase: 'manifest' | 'pages' | 'export' | 'done'
  /** Page slots processed. */
  done: number
  total: number
  tiers: Record<Tier, TierFigures>
}

export interface MigrationReport {
  root: string
  name?: string
  out?: string
  size: number
  pages: number
  zeroPages: number
  /** Distinct non-zero pages the image references. */
  distinctPages: number
  tiers: Record<Tier, TierFigures>
  /**
   * Manifest blocks: in all, fetched (and their wire bytes, the patch's included), and rebuilt
   * from an older manifest plus the source's patch.
   */
  manifest: { blocks: number, fetched: number, wireBytes: number, rebuilt?: number }
  /** Bytes received from peers of other sites (source included when it is elsewhere). */
  wanBytes: number
  /**
   * Pages that crossed sites compressed against a similar page the destination already had
   * (`pages`), and the reference pages read for that from the own store or same-site peers.
   */
  delta?: { pages: number, references: number }
  /** Holders dropped during the migration, with why. */
  droppedHolders: Array<{ peerId: string, reason: string }>
  durationMs: number
  /**
   * When each phase of the pull ran (ms since it started), the round trips it waited for and
   * its wire bytes in each direction; phases overlap where they run concurrently.
   */
  timeline?: TimelinePhase[]
  /** Image bytes per second of wall time. */
  throughput: number
  rounds: number
}

/** A peer that may hold pages, with what the node knows of it. */
export interface Holder {
  peerId: PeerId
  site?: string
  rttMs?: number
}

export interface FetchResult {
  /** Bytes received on the wire. */
  wireBytes: number
  /** CIDs the holder said it does not have. */
  missing: CID[]
  /** Pages that arrived compressed against their reference. */
  deltaPages?: number
}

/** What a puller needs from its node: narrow, so it can be driven by any host. */
export interface PullDeps {
  store: Store
  site: string
  self: PeerId
  /** Connected peers with their site and RTT. */
  peers(): Holder[]
  /** Site and RTT of one peer, when known. */
  describe(peer: PeerId): Holder
  presence(peer: PeerId, cids: CID[], options: { signal?: AbortSignal }): Promise<boolean[]>
  /** Providers of each CID, in the order asked. */
  findProviders(cids: CID[], options: { signal?: AbortSignal }): Promise<PeerId[][]>
  /** Fetch pages (raw) or blocks (dag-cbor) by CID, each verified before `onBlock`. */
  fetch(peer: PeerId, cids: CID[], options: { compress: boolean, refs?: Array<Page | undefined>, signal?: AbortSignal, onBlock(cid: CID, bytes: Uint8Array): void }): Promise<FetchResult>
  /** How image `root` differs from the older image `peer` would use as its basis (no patch: none). */
  manifestPatch(peer: PeerId, root: CID, options: { signal?: AbortSignal }): Promise<{ patch?: ManifestPatch, wireBytes: number }>
  /** Image `root`'s slots as zero runs and digest prefixes (none when `peer` does not hold it). */
  manifestThin(peer: PeerId, root: CID, options: { signal?: AbortSignal, maxEntries: number }): Promise<{ thin?: ThinManifest, wireBytes: number }>
  /** Fetch pages by digest prefix (PREFIX_BYTES each); each page is hashed and handed to `onPage` with its CID. */
  fetchByPrefix(peer: PeerId, prefixes: Uint8Array, options: { compress: boolean, signal?: AbortSignal, onPage(cid: CID, bytes: Uint8Array): void }): Promise<{ wireBytes: number, received: number }>
  /** Which of `prefixes` `peer` holds a page for (bit i, LSB first, for prefix i); no pages travel. */
  heldByPrefix?(peer: PeerId, prefixes: Uint8Array, options: { signal?: AbortSignal }): Promise<{ held: Uint8Array, wireBytes: number }>
}

export interface PullOptions {
  root: CID
  /** The peer that offers the image: holder of last resort. */
  source: PeerId
  name?: string
  /** Write the reassembled memory file here (sparse). */
  out?: string
  signal?: AbortSignal
  onProgress?(progress: MigrationProgress): void
  /** Defaults in constants.ts. */
  windowPages?: number
  slicePages?: number
}

export { pullImage } from './puller.ts'
export * from './constants.ts'
export * from './errors.ts'
