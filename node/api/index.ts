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
  close (): Promise<void>
}
