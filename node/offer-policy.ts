/**
 * What a fabric member's migration offer may do on this host (SECURITY.md, "Fabric members"):
 *
 * - who may offer at all (`--accept-from`);
 * - an offer only adds: a name held by an image someone else created is refused, and so is an
 *   out file another party wrote; a name or out path is owned by one migration at a time;
 * - the images it pins are recorded as created by that member, whose partial images are
 *   bounded in bytes (`partialQuota`);
 * - a live round's `previous` releases only that member's own image.
 */
import { lstat, readFile, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import type { PinOptions, Store } from '../store/index.ts'
import { InvalidRefError, NameTakenError } from '../store/errors.ts'
import { MigrationConflictError, OfferRefusedError, OutTakenError, PeerQuotaError } from './errors.ts'
import { DEFAULT_PEER_PARTIAL_QUOTA } from './constants.ts'

const log = logger('memfabric:node:offers')

/** Who may offer migrations: every fabric member, nobody, or these peer ids. */
export type AcceptFrom = 'all' | 'none' | string[]

export interface OfferPolicyInit {
  store: Store
  /** Default 'all': any fabric member. */
  acceptFrom?: AcceptFrom
  /** Bytes of partial images per offering peer (default DEFAULT_PEER_PARTIAL_QUOTA). */
  partialQuota?: number
}

/** The peers an accept policy admits; malformed ids are refused up front. */
function acceptList (from: AcceptFrom | undefined): (peer: PeerId) => boolean {
  if (from == null || from === 'all') return () => true
  if (from === 'none') return () => false
  const ids = new Set(from.map(id => {
    try {
      return peerIdFromString(id).toString()
    } catch {
      throw new InvalidRefError(`--accept-from '${id}' is not a peer id (nor all, none)`)
    }
  }))
  return (peer) => ids.has(peer.toString())
}

/** The sidecar that says which peer's migration wrote an out file. */
function ownerFile (out: string): string {
  return join(dirname(out), `.${basename(out)}.peer`)
}

export class OfferPolicy {
  private readonly store: Store
  private readonly accepts: (peer: PeerId) => boolean
  private readonly quota: number
  /** Names (`n:`) and out paths (`o:`) held by a migration in progress. */
  private readonly claims = new Set<string>()
  /** Quota checks and the partial pins they admit, one at a time. */
  private quotaLock: Promise<unknown> = Promise.resolve()

  constructor (init: OfferPolicyInit) {
    this.store = init.store
    this.accepts = acceptList(init.acceptFrom)
    this.quota = init.partialQuota ?? DEFAULT_PEER_PARTIAL_QUOTA
  }

  /** Throw OfferRefusedError unless `peer` may offer migrations to this host. */
  admit (peer: PeerId): void {
    if (!this.accepts(peer)) throw new OfferRefusedError(`this host does not accept migrations from ${peer.toString()}`)
  }

  /**
   * Hold `name` and `out` (an absolute path inside the out folder) for one migration of
   * `peer`: refused when another migration holds either, when the name belongs to an image
   * `peer` did not create, or when the out file was written by someone else. Returns the
   * release of the claim.
   */
  async claim (peer: PeerId, root: CID, name: string | undefined, out: string | undefined): Promise<() => void> {
    const keys = [...(name != null ? [`n:${name}`] : []), ...(out != null ? [`o:${out}`] : [])]
    const busy = keys.find(k => this.claims.has(k))
    if (busy != null) throw new MigrationConflictError(`${busy.startsWith('n:') ? `the name "${name}"` : `the out path ${out}`} is in use by another migration`)
    for (const k of keys) this.claims.add(k)
    const release = (): void => { for (const k of keys) this.claims.delete(k) }
    try {
      // checked again atomically when the image is pinned (Store.pin with a creator)
      if (name != null) await this.checkName(peer, root, name)
      if (out != null) await this.claimOut(peer, out)
      return release
    } catch (err) {
      release()
      throw err
    }
  }

  /** The store as a migration of `peer` sees it: its pins are `peer`'s and count against its quota. */
  storeFor (peer: PeerId): Store {
    const creator = peer.toString()
    const pin = async (root: CID, options: PinOptions = {}): Promise<void> => {
      if (options.partial !== true) return this.store.pin(root, { ...options, creator })
      await this.withQuotaLock(async () => {
        await this.checkQuota(creator, root, options)
        await this.store.pin(root, { ...options, creator })
      })
    }
    const store = this.store
    return new Proxy(store, {
      get (target, prop) {
        if (prop === 'pin') return pin
        const value = Reflect.get(target, prop, target)
        return typeof value === 'function' ? value.bind(target) : value
      }
    })
  }

  /** A live round supersedes `previous`: release it if `peer` created it, else leave it (and log). */
  async releasePrevious (peer: PeerId, previous: CID, root: CID): Promise<void> {
    if (previous.equals(root)) return
    let released = false
    try {
      released = await this.store.release(previous, peer.toString())
    } catch (err) {
      log.error('releasing previous round %s of %p failed - %e', previous, peer, err)
      return
    }
    if (!released) log('ignoring previous round %s offered by %p: not an image it created', previous, peer)
  }

  private async checkName (peer: PeerId, root: CID, name: string): Promise<void> {
    let owner: { root: CID, creator?: string } | undefined
    try {
      owner = await this.store.inspect(name)
    } catch (err: any) {
      if (err.code === 'ERR_REF_NOT_FOUND') return
      throw err
    }
    if (!owner.root.equals(root) && owner.creator !== peer.toString()) {
      throw new NameTakenError(`the name "${name}" belongs to an image this peer did not create`)
    }
  }

  private async claimOut (peer: PeerId, out: string): Promise<void> {
    const stat = await lstat(out).catch((err: any) => { if (err.code === 'ENOENT') return undefined; throw err })
    if (stat != null) {
      const owner = await readFile(ownerFile(out), 'utf8').catch(() => undefined)
      if (!stat.isFile() || owner !== peer.toString()) {
        throw new OutTakenError(`${out} exists and was not written by a migration of this peer`)
      }
      return
    }
    // before the export: a re-run after a crash mid-export is still this peer's
    await writeFile(ownerFile(out), peer.toString())
  }

  private async checkQuota (creator: string, root: CID, options: PinOptions): Promise<void> {
    const images = await this.store.list(options)
    // an image already held whole costs nothing more
    if (images.some(image => image.complete && image.root.equals(root))) return
    const { size } = await this.store.readManifest(root, options)
    let held = 0
    for (const image of images) {
      if (!image.complete && image.creator === creator && !image.root.equals(root)) held += image.size
    }
    if (held + size > this.quota) {
      throw new PeerQuotaError(`refusing ${size} more bytes of partial images from ${creator}: it holds ${held}, its quota on this host is ${this.quota}`)
    }
  }

  private async withQuotaLock<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.quotaLock.then(fn, fn)
    this.quotaLock = run.catch(() => {})
    return run
  }
}
