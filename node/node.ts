import { join, resolve, relative, isAbsolute, sep } from 'node:path'
import { mkdir } from 'node:fs/promises'
import { ClassicLevel } from 'classic-level'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, isMultiaddr } from '@multiformats/multiaddr'
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { loadPrivateKey } from '../store/repo.ts'
import type { Repo } from '../store/repo.ts'
import type { PageStore, Store } from '../store/index.ts'
import { InvalidRefError } from '../store/errors.ts'
import { validateName } from '../store/refs.ts'
import { NotStartedError, OutPathError, PeerUnreachableError } from './errors.ts'
import { createHost } from './libp2p.ts'
import type { CreateHostOptions, HostServices } from './libp2p.ts'
import type { DialMap } from './transport/dial-map.ts'
import { siteExchange } from '../protocols/site/index.ts'
import type { SiteExchange } from '../protocols/site/index.ts'
import { pageExchange } from '../protocols/pages/index.ts'
import type { PageExchange } from '../protocols/pages/index.ts'
import { presence } from '../protocols/presence/index.ts'
import type { Presence } from '../protocols/presence/index.ts'
import { blockExchange } from '../protocols/blocks/index.ts'
import type { BlockExchange } from '../protocols/blocks/index.ts'
import { providerRecords } from '../protocols/providers/index.ts'
import type { ProviderRecords } from '../protocols/providers/index.ts'
import { migrateOffer } from '../protocols/migrate/index.ts'
import type { MigrateOffer, Offer } from '../protocols/migrate/index.ts'
import { pullImage } from './migration/index.ts'
import type { Holder, MigrationProgress, MigrationReport, PullDeps } from './migration/index.ts'
import { Publisher } from './publisher.ts'
import { BasisIndex } from './migration/basis.ts'
import { MigrationRegistry } from './migrations.ts'
import { readRepoFabricKey } from './fabric-key.ts'
import { OfferPolicy } from './offer-policy.ts'
import type { AcceptFrom } from './offer-policy.ts'
import { DEFAULT_DIAL_TIMEOUT, DEFAULT_MIGRATION_OUT_DIR } from './constants.ts'

/**
 * LevelDB maps every table it keeps open (~2 MiB each), and those pages count in the daemon's
 * RSS: bound the open tables of the provider records (the Bloom filter in front spares most reads).
 * LevelDB raises any value below 74 to 74, so this keeps at most 64 tables (~128 MiB) mapped.
 */
const RECORDS_MAX_OPEN_FILES = 32
/** LevelDB's block cache for provider records (default 8 MiB): blocks are read from the mapped tables. */
const RECORDS_CACHE_BYTES = 1024 * 1024
/**
 * Memtable of the provider records (default 4 MiB). Keys are random, so every compaction
 * into level 1 reads (maps) its inputs whole: smaller level-0 tables keep that transient
 * small (4 GiB migration: 269 MB peak RSS against 284, same CPU).
 */
const RECORDS_WRITE_BUFFER_BYTES = 1024 * 1024

const log = logger('memfabric:node')

export type NodeServices = HostServices & {
  site: SiteExchange
  pages: PageExchange
  presence: Presence
  blocks: BlockExchange
  providers: ProviderRecords
  migrate: MigrateOffer
}

export interface MemfabricNodeInit {
  repo: Repo
  /** Listen addresses (default: the repo config's). */
  listen?: string[]
  /** Bootstrap peers (default: the repo config's). */
  bootstrap?: string[]
  /** Site label (default: the repo config's). */
  site?: string
  /** LAN discovery by mDNS (default: the repo config's `discovery.mdns`, else on when listening beyond loopback). */
  mdns?: CreateHostOptions['mdns']
  /** Outgoing TCP rewrites (the test network's WAN emulator). */
  dialMap?: DialMap
  /** Announce held pages in the DHT (default true). */
  publish?: boolean
  /** Private-network key (default: the repo's fabric.key; none means an open fabric). */
  fabricKey?: Uint8Array
  /** libp2p metrics (the daemon's `--metrics`: `prometheusMetrics({ registry })`; default none). */
  libp2pMetrics?: CreateHostOptions['metrics']
  /** Peer ids that may fetch pages and manifest blocks (default: empty = every fabric member). */
  allowPeers?: string[]
  /** Who may offer migrations to this node: 'all' (the default: every fabric member), 'none', or these peer ids. */
  acceptFrom?: AcceptFrom
  /** Bytes of partial images one offering peer may have here at once (default DEFAULT_PEER_PARTIAL_QUOTA). */
  partialQuota?: number
}

export { PeerUnreachableError, OutPathError }

export interface PullRequest {
  root: CID
  /** Peer id (found through the fabric), multiaddr string, PeerId or Multiaddr. */
  source: string | PeerId | Multiaddr
  name?: string
  out?: string
  signal?: AbortSignal
  onProgress?(progress: MigrationProgress): void
  /** Distinct pages planned together (default DEFAULT_WINDOW_PAGES). */
  windowPages?: number
}

/**
 * A memfabric peer: the repository's store served and announced over libp2p, and the
 * migration logic that pulls images from the nearest holders.
 */
export class MemfabricNode {
  readonly repo: Repo
  readonly libp2p: Libp2p<NodeServices>
  readonly site: string
  /** Migrations in and out, for metrics and the status page. */
  readonly migrations = new MigrationRegistry()
  status: 'started' | 'stopping' | 'stopped' = 'started'
  private readonly records: ClassicLevel<Uint8Array, Uint8Array>
  private readonly publisher?: Publisher
  private readonly controller = new AbortController()
  /** Bases of the images this node serves (manifest patches), shared with the page exchange. */
  private bases?: BasisIndex
  private readonly offers: OfferPolicy

  private constructor (repo: Repo, libp2p: Libp2p<NodeServices>, records: ClassicLevel<Uint8Array, Uint8Array>, site: string, publish: boolean, offers: OfferPolicy) {
    this.repo = repo
    this.libp2p = libp2p
    this.records = records
    this.site = site
    this.offers = offers
    if (publish) {
      this.publisher = new Publisher(repo.store, libp2p.services.providers)
      this.publisher.start()
    }
  }

  /** Start a node on an open repository. */
  static async create (init: MemfabricNodeInit): Promise<MemfabricNode> {
    const { repo } = init
    const site = init.site ?? repo.config.site
    const allowPeer = allowList(init.allowPeers)
    const offers = new OfferPolicy({ store: repo.store, acceptFrom: init.acceptFrom, partialQuota: init.partialQuota })
    // random keys and small values: snappy saves nothing, and uncompressed blocks are read
    // from the mapped tables instead of being decompressed into the block cache
    const records = new ClassicLevel<Uint8Array, Uint8Array>(join(repo.path, 'providers'), {
      keyEncoding: 'view', valueEncoding: 'view', maxOpenFiles: RECORDS_MAX_OPEN_FILES, compression: false, cacheSize: RECORDS_CACHE_BYTES, writeBufferSize: RECORDS_WRITE_BUFFER_BYTES
    })
    await records.open()
    let node: MemfabricNode | undefined
    const bases = new BasisIndex(repo.store)
    const libp2p = await createHost<Omit<NodeServices, keyof HostServices>>({
      privateKey: loadPrivateKey(repo.config),
      listen: init.listen ?? repo.config.addresses.listen,
      bootstrap: init.bootstrap ?? repo.config.bootstrap,
      mdns: init.mdns ?? repo.config.discovery?.mdns,
      dialMap: init.dialMap,
      fabricKey: init.fabricKey ?? await readRepoFabricKey(repo.path),
      metrics: init.libp2pMetrics,
      services: {
        site: siteExchange({ site }),
        pages: pageExchange({ store: repo.store, allowPeer, patch: async (root, opts) => bases.patch(root, opts), slots: (root, opts) => repo.store.pageSlots(root, opts) }),
        presence: presence({ store: servingStore(repo.store) }),
        blocks: blockExchange({ blocks: repo.store, allowPeer }),
        providers: providerRecords({ db: records, source: (options) => repo.store.allPages(options) }),
        migrate: migrateOffer({
          onOffer: async (offer, from, options) => {
            if (node == null) throw new NotStartedError('node is starting')
            return node.acceptOffer(offer, from, options)
          }
        })
      }
    }).catch(async err => {
      await records.close()
      throw err
    })
    node = new MemfabricNode(repo, libp2p as Libp2p<NodeServices>, records, site, init.publish ?? true, offers)
    node.bases = bases
    log('node %p started in site %s on %s', libp2p.peerId, site, libp2p.getMultiaddrs().map(String).join(', '))
    return node
  }

  get peerId (): PeerId {
    return this.libp2p.peerId
  }

  /** Stop the host, then the record store (idempotent; does not close the repo). */
  async stop (): Promise<void> {
    if (this.status !== 'started') return
    this.status = 'stopping'
    this.controller.abort()
    await this.publisher?.stop()
    await this.libp2p.stop()
    await this.records.close()
    this.status = 'stopped'
  }

  /** Wait until pages stored so far are announced. */
  async flushAnnouncements (): Promise<void> {
    await this.publisher?.flush()
  }

  /** Connected peers with their site and RTT. */
  peers (): Holder[] {
    return this.libp2p.getPeers().map(peer => this.describe(peer))
  }

  describe (peer: PeerId): Holder {
    const known = this.libp2p.services.site.get(peer)
    const rtt = known?.rttMs ?? this.libp2p.getConnections(peer).find(c => c.rtt != null)?.rtt
    return { peerId: peer, site: known?.site, rttMs: rtt }
  }

  /** Resolve a peer id (through the fabric) or multiaddr and make sure we are connected. */
  async connect (target: string | PeerId | Multiaddr, options: { signal?: AbortSignal } = {}): Promise<PeerId> {
    const signal = options.signal ?? AbortSignal.timeout(DEFAULT_DIAL_TIMEOUT)
    let dialTarget: PeerId | Multiaddr
    if (typeof target === 'string') {
      if (target.startsWith('/')) {
        try {
          dialTarget = multiaddr(target)
        } catch (err: any) {
          throw new InvalidRefError(`'${target}' is not a valid multiaddr: ${err.message}`)
        }
      } else {
        try {
          dialTarget = peerIdFromString(target)
        } catch {
          throw new InvalidRefError(`'${target}' is neither a peer id nor a multiaddr`)
        }
      }
    } else {
      dialTarget = target
    }
    try {
      if (!isMultiaddr(dialTarget) && this.libp2p.getConnections(dialTarget).length === 0) {
        // a peer id: ask the fabric where it is
        const info = await this.libp2p.peerRouting.findPeer(dialTarget, { signal })
        await this.libp2p.peerStore.merge(info.id, { multiaddrs: info.multiaddrs })
      }
      const connection = await this.libp2p.dial(dialTarget, { signal })
      const peer = connection.remotePeer
      // learn its site before planning (the exchange also runs on identify)
      if (this.libp2p.services.site.get(peer) == null) {
        await this.libp2p.services.site.exchange(peer).catch(() => {})
      }
      return peer
    } catch (err: any) {
      throw new PeerUnreachableError(`cannot reach peer ${target.toString()}: ${err.message}`, { cause: err })
    }
  }

  /** Destination side: pull an image from the nearest holders, the source last. */
  async pull (request: PullRequest): Promise<MigrationReport> {
    const source = await this.connect(request.source, { signal: request.signal })
    const tracked = this.migrations.track({ direction: 'in', peer: source.toString(), root: request.root.toString(), name: request.name }, request.onProgress)
    return this.tracked(tracked, pullImage(this.pullDeps(), {
      root: request.root,
      source,
      name: request.name,
      out: request.out,
      signal: request.signal,
      onProgress: tracked.onProgress,
      windowPages: request.windowPages
    }))
  }

  /** Source side: offer an image to a destination and wait for its report. */
  async offer (to: string | PeerId | Multiaddr, offer: Offer, options: { signal?: AbortSignal, onProgress?(p: MigrationProgress): void } = {}): Promise<MigrationReport> {
    const peer = await this.connect(to, { signal: options.signal })
    // a destination in another site asks for the image's manifest patch first: find the basis
    // while the offer and the root travel (a few hundred ms of comparing older manifests,
    // otherwise spent while the destination waits); the answer is cached for its request
    if (this.describe(peer).site !== this.site) this.bases?.patch(offer.root, { signal: options.signal }).catch(() => {})
    const tracked = this.migrations.track({ direction: 'out', peer: peer.toString(), root: offer.root.toString(), name: offer.name }, options.onProgress)
    return await this.tracked(tracked, this.libp2p.services.migrate.offer(peer, offer, { ...options, onProgress: tracked.onProgress }) as Promise<MigrationReport>)
  }

  private async tracked (tracked: { end(result: { report?: MigrationReport, error?: unknown }): void }, migration: Promise<MigrationReport>): Promise<MigrationReport> {
    try {
      const report = await migration
      tracked.end({ report })
      return report
    } catch (error) {
      tracked.end({ error })
      throw error
    }
  }

  /** Where a migration offered by a peer may write its memory file. */
  resolveOfferedOut (out: string): string {
    const dir = resolve(this.repo.path, DEFAULT_MIGRATION_OUT_DIR)
    const path = resolve(dir, out)
    const rel = relative(dir, path)
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
      throw new OutPathError(`a migration offered by a peer may only write inside ${dir}; got ${out}`)
    }
    // dot names are the node's own (an out file's owner record)
    if (rel.split(sep).some(part => part.startsWith('.'))) {
      throw new OutPathError(`a migration offered by a peer may not write a dot file; got ${out}`)
    }
    return path
  }

  /**
   * Destination side of a peer's offer: it only adds (see OfferPolicy), to images recorded as
   * created by `from`; a live round releases its previous round only if `from` created it.
   */
  private async acceptOffer (offer: Offer, from: PeerId, options: { signal?: AbortSignal, onProgress(progress: unknown): void }): Promise<MigrationReport> {
    this.offers.admit(from)
    if (offer.name != null) validateName(offer.name)
    let out: string | undefined
    if (offer.out != null) {
      out = this.resolveOfferedOut(offer.out)
      await mkdir(resolve(out, '..'), { recursive: true })
    }
    const release = await this.offers.claim(from, offer.root, offer.name, out)
    try {
      const signal = AbortSignal.any([this.controller.signal, ...(options.signal != null ? [options.signal] : [])])
      const tracked = this.migrations.track({ direction: 'in', peer: from.toString(), root: offer.root.toString(), name: offer.name }, options.onProgress)
      const deps = { ...this.pullDeps(), store: this.offers.storeFor(from) }
      const report = await this.tracked(tracked, pullImage(deps, { root: offer.root, source: from, name: offer.name, out, signal, onProgress: tracked.onProgress }))
      if (offer.previous != null) await this.offers.releasePrevious(from, offer.previous, offer.root)
      return { ...report, rounds: offer.round ?? 1 }
    } finally {
      release()
    }
  }

  private pullDeps (): PullDeps {
    const { pages, presence: presenceService, providers, blocks } = this.libp2p.services
    return {
      store: this.repo.store,
      site: this.site,
      self: this.peerId,
      peers: () => this.peers(),
      describe: (peer) => this.describe(peer),
      presence: async (peer, cids, options) => presenceService.query(peer, cids, options),
      findProviders: async (cids, options) => providers.resolve(cids, options),
      manifestPatch: async (peer, root, options) => pages.manifestPatch(peer, root, options),
      manifestThin: async (peer, root, options) => pages.manifestThin(peer, root, options),
      fetchByPrefix: async (peer, prefixes, options) => {
        const result = await pages.fetchByPrefix(peer, prefixes, { signal: options.signal, compress: options.compress ? 'zstd' : undefined, onPage: options.onPage })
        return { wireBytes: result.wireBytes, received: result.received.length }
      },
      heldByPrefix: async (peer, prefixes, options) => pages.heldByPrefix(peer, prefixes, options),
      fetch: async (peer, cids, options) => {
        if (cids.length > 0 && cids[0].code !== raw.code) {
          const result = await blocks.fetch(peer, cids, { signal: options.signal, onBlock: options.onBlock, compress: options.compress })
          return { wireBytes: result.wireBytes, missing: result.missing }
        }
        const result = await pages.fetch(peer, cids, {
          signal: options.signal,
          compress: options.compress ? 'zstd' : undefined,
          refs: options.refs,
          onPage: options.onBlock
        })
        return { wireBytes: result.wireBytes, missing: result.missing, deltaPages: result.deltaPages }
      }
    }
  }
}

/** The peers an allow-list admits (undefined: no list, every fabric member); malformed ids are refused up front. */
function allowList (ids: string[] | undefined): ((peer: PeerId) => boolean) | undefined {
  if (ids == null || ids.length === 0) return undefined
  const allowed = new Set(ids.map(id => {
    try {
      return peerIdFromString(id).toString()
    } catch {
      throw new InvalidRefError(`--allow-peer '${id}' is not a peer id`)
    }
  }))
  return (peer) => allowed.has(peer.toString())
}

/** The store as peers see it: presence answers for manifest blocks as well as pages. */
function servingStore (store: Store): PageStore {
  return {
    has: async (cids, options) => {
      const held = await store.has(cids, options)
      await Promise.all(cids.map(async (cid, i) => {
        if (cid.code !== raw.code) held[i] = await store.hasBlock(cid, options)
      }))
      return held
    },
    get: async (cid, options) => store.get(cid, options),
    getMany: (cids, options) => store.getMany(cids, options),
    putMany: async (pages, options) => store.putMany(pages, options),
    allPages: (options) => store.allPages(options)
  }
}
