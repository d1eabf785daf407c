/**
 * `LocalApi`: the api with no daemon — the repository opened directly (and locked) by this
 * process. Network questions (`peers`, `providers`) need a daemon and fail with a typed error.
 */
import type { CID } from 'multiformats/cid'
import { Repo } from '../../store/repo.ts'
import { DaemonNotRunningError } from './errors.ts'
import type { ImageInfo } from '../../store/index.ts'
import { exportCar, importCar } from '../../store/car.ts'
import type { StoreOptions } from '../../store/options.ts'
import type { GcResult, StoreStats, VerifyResult } from '../../store/index.ts'
import type {
  CarSummary, ImageDetails, ImageSummary, ImportSummary, MemfabricApi, MigrateOptions, MigrationSummary, NodeIdentity, PeerSummary, ProgressOptions
} from './index.ts'

export { DaemonNotRunningError }

function summary (info: ImageInfo): ImageSummary {
  return {
    root: info.root.toString(),
    names: [...info.names],
    format: info.format,
    size: info.size,
    pages: info.pages,
    zeroPages: info.zeroPages,
    distinctPages: info.distinctPages,
    complete: info.complete,
    createdAt: info.createdAt
  }
}

function cidString (cid: CID): string {
  return cid.toString()
}

export class LocalApi implements MemfabricApi {
  readonly online: boolean = false
  readonly repo: Repo

  constructor (repo: Repo) {
    this.repo = repo
  }

  /** Open (and lock) the repository at `dir`. Throws RepoNotFoundError / RepoLockedError. */
  static async open (dir: string, options?: StoreOptions): Promise<LocalApi> {
    return new LocalApi(await Repo.open(dir, options))
  }

  async importImage (path: string, options: ProgressOptions & { name?: string } = {}): Promise<ImportSummary> {
    const { onProgress } = options
    const r = await this.repo.store.importImage(path, {
      name: options.name,
      signal: options.signal,
      onProgress: onProgress != null ? e => { onProgress({ phase: 'import', done: e.done, total: e.total }) } : undefined
    })
    return {
      root: cidString(r.root),
      size: r.size,
      pages: r.pages,
      zeroPages: r.zeroPages,
      newPages: r.newPages,
      format: r.format
    }
  }

  async exportImage (ref: string, outPath: string, options: ProgressOptions = {}): Promise<void> {
    const { onProgress } = options
    await this.repo.store.exportImage(ref, outPath, {
      signal: options.signal,
      onProgress: onProgress != null ? e => { onProgress({ phase: 'export', done: e.done, total: e.total }) } : undefined
    })
  }

  async exportCar (ref: string, path: string, options: ProgressOptions = {}): Promise<CarSummary> {
    const { onProgress } = options
    const r = await exportCar(this.repo.store, ref, path, {
      signal: options.signal,
      onProgress: onProgress != null ? e => { onProgress({ phase: 'export', done: e.done, total: e.total }) } : undefined
    })
    return { root: cidString(r.root), blocks: r.blocks, pages: r.pages, size: r.size }
  }

  async importCar (path: string, options: ProgressOptions & { name?: string } = {}): Promise<CarSummary & { newPages: number }> {
    const { onProgress } = options
    const r = await importCar(this.repo.store, path, {
      name: options.name,
      signal: options.signal,
      onProgress: onProgress != null ? e => { onProgress({ phase: 'import', done: e.done, total: e.total }) } : undefined
    })
    return { root: cidString(r.root), blocks: r.blocks, pages: r.pages, size: r.size, newPages: r.newPages }
  }

  async list (options: { signal?: AbortSignal } = {}): Promise<ImageSummary[]> {
    return (await this.repo.store.list(options)).map(summary)
  }

  async inspect (ref: string, options: { signal?: AbortSignal } = {}): Promise<ImageDetails> {
    const info = await this.repo.store.inspect(ref, options)
    const manifest = await this.repo.store.readManifest(info.root, options)
    return {
      ...summary(info),
      pageSize: manifest.pageSize,
      extents: manifest.extents.map(e => ({ offset: e.offset, length: e.length })),
      chunks: manifest.chunks.length
    }
  }

  async remove (ref: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.repo.store.remove(ref, options)
  }

  async gc (options: { signal?: AbortSignal } = {}): Promise<GcResult> {
    return await this.repo.store.gc(options)
  }

  async stats (options: { signal?: AbortSignal } = {}): Promise<StoreStats> {
    return await this.repo.store.stats(options)
  }

  async verify (options: { signal?: AbortSignal, deep?: boolean } = {}): Promise<VerifyResult> {
    return await this.repo.store.verify(options)
  }

  /** Identity from the config; no addresses, since nothing listens. */
  async id (): Promise<NodeIdentity> {
    return { peerId: this.repo.config.identity.peerId, site: this.repo.config.site, addresses: [] }
  }

  async peers (): Promise<PeerSummary[]> {
    throw new DaemonNotRunningError(this.repo.path)
  }

  async providers (_cid: string, _options?: { signal?: AbortSignal }): Promise<PeerSummary[]> {
    throw new DaemonNotRunningError(this.repo.path)
  }

  async migrate (_ref: string, _to: string, _options?: ProgressOptions & MigrateOptions): Promise<MigrationSummary> {
    throw new DaemonNotRunningError(this.repo.path)
  }

  async pull (_root: string, _from: string, _options?: ProgressOptions & { name?: string, out?: string }): Promise<MigrationSummary> {
    throw new DaemonNotRunningError(this.repo.path)
  }

  /** Close the store and release the repository lock. Idempotent. */
  async close (): Promise<void> {
    await this.repo.close()
  }
}
