/**
 * The operations the CLI asks of a repository. Two implementations share this contract:
 * `LocalApi` opens the repository directly (no daemon running), `HttpApiClient` talks to the
 * daemon's control API on localhost when a daemon holds the repository.
 *
 * Every value is JSON-friendly (CIDs as strings) so both sides look the same.
 *
 * @example
 * ```ts
 * const api = await connectApi('/var/lib/memfabric')
 * const { root } = await api.importImage('/dev/shm/vm1.ram', { name: 'vm1' })
 * await api.close()
 * ```
 */
import type { GcResult, StoreStats, VerifyResult, Extent } from '../../store/index.ts'
import type { MigrationReport } from '../migration/index.ts'

export interface ProgressUpdate {
  phase: string
  done: number
  total: number
}

export interface ProgressOptions {
  signal?: AbortSignal
  onProgress?(update: ProgressUpdate): void
}

export interface ImportSummary {
  root: string
  size: number
  pages: number
  zeroPages: number
  newPages: number
  format: 'raw' | 'elf'
}

export interface CarSummary {
  root: string
  /** Manifest blocks (root and chunks). */
  blocks: number
  /** Distinct non-zero pages. */
  pages: number
  /** Image size. */
  size: number
}

export interface ImageSummary {
  root: string
  names: string[]
  format: 'raw' | 'elf'
  size: number
  pages: number
  zeroPages: number
  distinctPages: number
  complete: boolean
  createdAt: number
}

export interface ImageDetails extends ImageSummary {
  pageSize: number
  extents: Extent[]
  chunks: number
}

export interface NodeIdentity {
  peerId: string
  site: string
  addresses: string[]
  /** Control API address, when a daemon answers. */
  api?: string
}

export interface PeerSummary {
  peerId: string
  site?: string
  rttMs?: number
  addresses: string[]
  connected: boolean
}

export interface MemfabricApi {
  /** True when this talks to a running daemon. */
  readonly online: boolean
  importImage (path: string, options?: ProgressOptions & { name?: string }): Promise<ImportSummary>
  exportImage (ref: string, outPath: string, options?: ProgressOptions): Promise<void>
  /** Write an image as a CARv1 file (manifest root as the CAR root; pages as raw blocks). */
  exportCar (ref: string, path: string, options?: ProgressOptions): Promise<CarSummary>
  /** Verify a CAR file of an image block by block, store it and pin its root. */
  importCar (path: string, options?: ProgressOptions & { name?: string }): Promise<CarSummary & { newPages: number }>
  list (options?: { signal?: AbortSignal }): Promise<ImageSummary[]>
  inspect (ref: string, options?: { signal?: AbortSignal }): Promise<ImageDetails>
  remove (ref: string, options?: { signal?: AbortSignal }): Promise<void>
  gc (options?: { signal?: AbortSignal }): Promise<GcResult>
  stats (options?: { signal?: AbortSignal }): Promise<StoreStats>
  verify (options?: { signal?: AbortSignal, deep?: boolean }): Promise<VerifyResult>
  /** Needs a daemon. */
  id (options?: { signal?: AbortSignal }): Promise<NodeIdentity>
  /** Needs a daemon. */
  peers (options?: { signal?: AbortSignal }): Promise<PeerSummary[]>
  /** Needs a daemon. */
  providers (cid: string, options?: { signal?: AbortSignal }): Promise<PeerSummary[]>
  /**
   * Needs a daemon. Source side: offer an image (REF, or a file to import first) to a peer.
   * Over the control API a file must be given by its absolute path: a relative REF is a name.
   */
  migrate (ref: string, to: string, options?: ProgressOptions & MigrateOptions): Promise<MigrationSummary>
  /** Needs a daemon. Destination side: pull an image from a peer. */
  pull (root: string, from: string, options?: ProgressOptions & { name?: string, out?: string }): Promise<MigrationSummary>
  close (): Promise<void>
}

export interface MigrateOptions {
  /** Name of the image at the destination (default: the source's name for REF). */
  name?: string
  /** Memory file the destination writes (inside its migration output folder). */
  out?: string
  /** Iterative pre-copy rounds while the file at REF keeps changing. */
  live?: boolean
  /**
   * Live: pauses the source VM before the final round. It runs in the caller's process: over
   * the control API the daemon calls it back on the call's stream (rpc.ts) and waits for it.
   */
  pause?(): Promise<void>
  /** Live: stop pre-copy once a round changes at most this many pages. */
  minDirtyPages?: number
  /** Live: most pre-copy rounds. */
  maxRounds?: number
}

export interface RoundSummary {
  round: number
  root: string
  /** Pages that changed since the previous round (all non-zero pages in round 1). */
  dirtyPages: number
  final: boolean
  report: MigrationReport
}

/** The destination's report, plus the rounds of a live migration. */
export interface MigrationSummary extends MigrationReport {
  roundsDetail?: RoundSummary[]
  /** Live: time from pausing the source to the destination holding the final image (ms). */
  downtimeMs?: number
}
