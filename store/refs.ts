/**
 * Names and pins of images (see `Store` in index.ts on how names hold pins): resolving a
 * reference, pinning, removing, and listing what is pinned. Name and pin changes commit in
 * one level batch, under the store lock.
 */
import { CID } from 'multiformats/cid'
import type { AbortOptions } from '@libp2p/interface'
import { BlockNotFoundError, InvalidRefError, NameTakenError, RefNotFoundError } from './errors.ts'
import type { BlockFiles } from './block-files.ts'
import type { ManifestReader } from './manifest-reader.ts'
import type { Mutex } from './mutex.ts'
import type { IndexDb, IndexOp, PinRecord } from './schema.ts'
import type { BlockReader } from './internal.ts'
import type { ImageInfo, Manifest, PinOptions } from './index.ts'

const NAME_RE = /^[A-Za-z0-9._@:-]{1,255}$/

function parseCid (ref: string): CID | undefined {
  try {
    return CID.parse(ref)
  } catch {
    return undefined
  }
}

/** Throw InvalidRefError unless `name` may name an image. */
export function validateName (name: string): void {
  if (!NAME_RE.test(name)) {
    throw new InvalidRefError(`invalid image name "${name}": use 1-255 of A-Z a-z 0-9 . _ @ : -`)
  }
  if (parseCid(name) != null) {
    throw new InvalidRefError(`invalid image name "${name}": it reads as a CID`)
  }
}

/** Throw InvalidRefError unless `ref` may be a name (a string that is not a CID). */
function checkNameRef (ref: string): void {
  if (!NAME_RE.test(ref)) throw new InvalidRefError(`invalid reference "${ref}": not a CID or an image name`)
}

function info (key: string, rec: PinRecord, names: string[]): ImageInfo {
  return {
    root: CID.parse(key),
    names,
    format: rec.format,
    size: rec.size,
    pages: rec.pages,
    zeroPages: rec.zeroPages,
    distinctPages: rec.distinctPages,
    complete: rec.state === 'complete',
    createdAt: rec.createdAt,
    ...(rec.creator != null ? { creator: rec.creator } : {})
  }
}

export interface RefsComponents {
  index: IndexDb
  lock: Mutex
  blockFiles: BlockFiles
  blocks: Pick<BlockReader, 'hasBlock'>
  manifests: ManifestReader
}

export class Refs {
  private readonly components: RefsComponents

  constructor (components: RefsComponents) {
    this.components = components
  }

  /** Resolve a name or CID string to a root CID. Throws RefNotFoundError / InvalidRefError. */
  async resolve (ref: string | CID, options: AbortOptions = {}): Promise<CID> {
    options.signal?.throwIfAborted()
    let cid = typeof ref === 'string' ? undefined : CID.asCID(ref) ?? undefined
    if (typeof ref === 'string') {
      cid = parseCid(ref)
      if (cid == null) {
        checkNameRef(ref)
        const root = await this.components.index.names.get(ref)
        if (root == null) throw new RefNotFoundError(`no image named "${ref}"`)
        return CID.parse(root)
      }
    }
    if (cid == null) throw new InvalidRefError('invalid reference: not a CID or an image name')
    const key = cid.toString()
    if ((await this.components.index.pins.has(key)) || (await this.components.blocks.hasBlock(cid))) return cid
    throw new RefNotFoundError(`no image ${key} in this store`)
  }

  /** Pin an image, complete or `partial`, optionally naming it (see `Store.pin`). */
  async pin (root: CID, options: PinOptions = {}): Promise<void> {
    if (options.name != null) validateName(options.name)
    await this.components.lock.run(async () => {
      const key = root.toString()
      const existing = await this.components.index.pins.get(key)
      let record: PinRecord
      if (options.partial === true) {
        if (existing != null) {
          record = existing
        } else {
          let m: Manifest | undefined
          try {
            m = await this.components.manifests.read(root, options)
          } catch (err) {
            if (!(err instanceof BlockNotFoundError)) throw err
          }
          record = { state: 'partial', createdAt: Date.now(), size: m?.size ?? 0, pages: m?.pages ?? 0, zeroPages: 0, distinctPages: 0, format: m?.format ?? 'raw' }
        }
      } else {
        const m = await this.components.manifests.read(root, options)
        const counts = await this.components.manifests.countPages(root, options)
        record = { state: 'complete', createdAt: existing?.createdAt ?? Date.now(), size: m.size, pages: m.pages, zeroPages: counts.zeroPages, distinctPages: counts.distinctPages, format: m.format }
      }
      // a partial pin only guards pages in flight; completing it without a name pins explicitly
      record = { ...record, explicit: existing?.explicit === true || (options.name == null && options.partial !== true) }
      // a root pinned by a second party is no longer one member's alone: it counts as local
      delete record.creator
      const creator = existing == null || existing.creator === options.creator ? options.creator : undefined
      if (creator != null) record.creator = creator
      const ops = [this.components.index.putPin(key, record)]
      if (options.name != null) {
        if (options.creator != null) await this.checkNameFree(options.name, key, options.creator)
        ops.push(...await this.nameOps(options.name, key))
      }
      // the blocks the pin refers to are durable before it is
      await this.components.blockFiles.sync()
      await this.components.index.write(ops, true)
    })
  }

  /** Remove a name (and the pin nothing else holds) or a CID's pin and names (see `Store.remove`). */
  async remove (ref: string | CID, options: AbortOptions = {}): Promise<void> {
    options.signal?.throwIfAborted()
    await this.components.lock.run(async () => {
      const names = await this.components.index.names.iterator().all()
      const isName = typeof ref === 'string' && parseCid(ref) == null
      const ops: IndexOp[] = []
      if (isName) {
        checkNameRef(ref)
        const root = names.find(([n]) => n === ref)?.[1]
        if (root == null) throw new RefNotFoundError(`no image named "${ref}"`)
        ops.push(this.components.index.delName(ref))
        if (await this.orphaned(root, ref, names)) ops.push(this.components.index.delPin(root))
      } else {
        const cid = typeof ref === 'string' ? CID.parse(ref) : ref
        const key = cid.toString()
        if (!(await this.components.index.pins.has(key))) throw new RefNotFoundError(`image ${key} is not pinned`)
        ops.push(this.components.index.delPin(key))
        for (const [n, r] of names) if (r === key) ops.push(this.components.index.delName(n))
      }
      await this.components.index.write(ops, true)
    })
  }

  /**
   * Remove `root`'s pin and every name of it if fabric member `creator` created it; returns
   * whether it did (see `Store.release`). Every name of such a root came from that member:
   * a pin by anyone else makes the root local (see `pin`).
   */
  async release (root: CID, creator: string, options: AbortOptions = {}): Promise<boolean> {
    options.signal?.throwIfAborted()
    return this.components.lock.run(async () => {
      const key = root.toString()
      const rec = await this.components.index.pins.get(key)
      if (rec?.creator !== creator) return false
      const ops: IndexOp[] = [this.components.index.delPin(key)]
      for await (const [n, r] of this.components.index.names.iterator()) if (r === key) ops.push(this.components.index.delName(n))
      await this.components.index.write(ops, true)
      return true
    })
  }

  /**
   * Throw NameTakenError when `name` points at a root other than `rootKey` that `creator` did
   * not create: a member's migration may move only its own names. Call with the lock held.
   */
  private async checkNameFree (name: string, rootKey: string, creator: string): Promise<void> {
    const old = await this.components.index.names.get(name)
    if (old == null || old === rootKey) return
    const rec = await this.components.index.pins.get(old)
    if (rec?.creator !== creator) throw new NameTakenError(`the name "${name}" belongs to an image this peer did not create`)
  }

  /**
   * Index ops that point `name` at `rootKey`; when the name leaves another root that nothing
   * else holds (no other name, no explicit pin), that root's pin goes too, so gc can free it.
   * Call with the lock held.
   */
  async nameOps (name: string, rootKey: string): Promise<IndexOp[]> {
    const ops = [this.components.index.putName(name, rootKey)]
    const old = await this.components.index.names.get(name)
    if (old != null && old !== rootKey && await this.orphaned(old, name, await this.components.index.names.iterator().all())) {
      ops.push(this.components.index.delPin(old))
    }
    return ops
  }

  async list (options: AbortOptions = {}): Promise<ImageInfo[]> {
    options.signal?.throwIfAborted()
    const names = await this.namesByRoot()
    const out: ImageInfo[] = []
    for await (const [k, rec] of this.components.index.pins.iterator()) out.push(info(k, rec, names.get(k) ?? []))
    return out.sort((a, b) => a.createdAt - b.createdAt)
  }

  async inspect (ref: string | CID, options: AbortOptions = {}): Promise<ImageInfo> {
    const root = await this.resolve(ref, options)
    const key = root.toString()
    const rec = await this.components.index.pins.get(key)
    if (rec == null) throw new RefNotFoundError(`image ${key} is not pinned`)
    const names = await this.namesByRoot()
    return info(key, rec, names.get(key) ?? [])
  }

  /** Whether `root`'s pin is held by nothing once `name` no longer points at it. */
  private async orphaned (root: string, name: string, names: Array<[string, string]>): Promise<boolean> {
    if (names.some(([n, r]) => r === root && n !== name)) return false
    const rec = await this.components.index.pins.get(root)
    return rec != null && rec.explicit !== true
  }

  private async namesByRoot (): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>()
    for await (const [n, r] of this.components.index.names.iterator()) {
      const list = out.get(r) ?? []
      list.push(n)
      out.set(r, list)
    }
    return out
  }
}
