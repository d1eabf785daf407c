/**
 * Provider records at scale: which peers hold which pages.
 *
 * Every host announces the page CIDs it holds. Instead of one kad-dht `provide()` per CID
 * (one lookup each), keys are sorted by their kad position, the keyspace is cut into regions,
 * each region's closest peers are found once through kad-dht, and all of the region's
 * records go to the `replication` closest peers of each key over one pipelined stream per
 * peer, thousands of keys per frame (`/memfabric/providers/2.0.0`; a key is the first 16 bytes
 * of the page's sha2-256 digest, the kad position still comes from the whole CID). Resolving
 * many CIDs works the same way. Replicas keep records in level (bounded by disk, not RAM)
 * until they expire; the republish task re-announces everything from a source before that.
 *
 * @example
 * ```ts
 * const node = await createHost({ services: { providers: providerRecords({ db, source: () => store.allPages() }) } })
 * await node.services.providers.provide(cids)
 * const providers = await node.services.providers.findProviders(cids) // Map<cid string, PeerId[]>
 * ```
 */
import type { AbstractLevel } from 'abstract-level'
import type { AbortOptions, PeerId, PeerStore, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'
import { ProviderRecords } from './provider-records.ts'

export * from './constants.ts'
export * from './errors.ts'
export { RecordStore } from './record-store.ts'
export { recordKey } from './keyspace.ts'
export type { RecordStoreInit } from './record-store.ts'
export { ProviderRecords }

/** What the service uses of kad-dht: closest-peers lookups, and how many peers one returns (`k`). */
export type ProvidersDht = Pick<KadDHT, 'k' | 'getClosestPeers'>

/** What the service needs from libp2p (a narrow view of its components). */
export interface ProviderRecordsComponents {
  peerId: PeerId
  peerStore: PeerStore
  registrar: {
    handle(protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void>
    unhandle(protocol: string, options?: AbortOptions): Promise<void>
  }
  connectionManager: {
    openStream(peer: PeerId, protocol: string, options?: AbortOptions): Promise<Stream>
  }
  addressManager: {
    getAddresses(): Multiaddr[]
  }
  /**
   * The node's kad-dht: libp2p puts each service in the components under its service name,
   * and the host names its DHT `dht` (node/libp2p.ts). Read when first used, not at creation.
   */
  dht: ProvidersDht
}

export interface ProviderRecordsInit {
  /** Level database (root or sublevel) for the records this peer holds as a replica. */
  db: AbstractLevel<any, any, any>
  /** Peers holding each record (default DEFAULT_REPLICATION = 3). */
  replication?: number
  /** Lifetime of records we publish and the default we grant (default DEFAULT_RECORD_TTL = 24 h). */
  recordTtl?: number
  /** Re-announce everything from `source` this often (default DEFAULT_REPUBLISH_INTERVAL = 12 h). */
  republishInterval?: number
  /** Delete expired records this often (default DEFAULT_SWEEP_INTERVAL = 1 h). */
  sweepInterval?: number
  /** What this peer provides, for the republish task (the node passes `store.allPages()`). */
  source?: (options?: AbortOptions) => AsyncIterable<CID[]>
  /** Keys per ADD frame (default DEFAULT_ADD_BATCH_SIZE = 2048). */
  addBatchSize?: number
  /** Keys per GET frame (default DEFAULT_GET_BATCH_SIZE = 2048). */
  getBatchSize?: number
  /** Unanswered frames per stream (default DEFAULT_WINDOW = 4). */
  window?: number
  /** Idle time allowed per frame (default DEFAULT_MESSAGE_TIMEOUT = 30 s). */
  messageTimeout?: number
  /** Time allowed to open a stream (default DEFAULT_DIAL_TIMEOUT = 10 s). */
  dialTimeout?: number
  /** Time allowed per closest-peers lookup (default DEFAULT_LOOKUP_TIMEOUT = 30 s). */
  lookupTimeout?: number
  /** Max repeats of a region lookup until no new peer appears (default DEFAULT_LOOKUP_ROUNDS = 4). */
  lookupRounds?: number
  /** How long a region's closest peers are reused (default DEFAULT_REGION_CACHE_TTL = 5 min). */
  regionCacheTtl?: number
  /** Providers returned and kept per key (default DEFAULT_MAX_PROVIDERS_PER_KEY = 32). */
  maxProvidersPerKey?: number
  /** Entries one providing peer may hold on this replica (default DEFAULT_MAX_RECORDS_PER_PEER = 8 Mi). */
  maxRecordsPerPeer?: number
  /** Inbound streams per connection (default DEFAULT_MAX_INBOUND_STREAMS = 32). */
  maxInboundStreams?: number
  /** Outbound streams per connection (default DEFAULT_MAX_OUTBOUND_STREAMS = 64). */
  maxOutboundStreams?: number
  /** Clock in ms, for tests (default Date.now). */
  now?: () => number
}

export interface ProvideOptions extends AbortOptions {
  /** Lifetime asked of replicas, ms (default the service's recordTtl; capped by replicas). */
  ttl?: number
}

export interface ProvideResult {
  /** CIDs published. */
  records: number
  /** Record copies acknowledged (this peer's own copy included). */
  replicas: number
  /** Remote peers that acknowledged at least one record. */
  peers: number
  /** Record copies that found no live replica. */
  failedReplicas: number
}

export interface FindProvidersOptions extends AbortOptions {
  /** Ask every replica of each key at once instead of the closest first (default false). */
  queryAll?: boolean
}

/** Counters for metrics. */
export interface ProviderStats {
  /** Record copies acknowledged by replicas (ours included). */
  published: number
  /** Record copies in flight right now. */
  pending: number
  /** Records re-announced by the republish task. */
  refreshed: number
  /** Record copies that found no live replica. */
  failedReplicas: number
  /** Records this peer stored as a replica. */
  stored: number
  /** Closest-peer lookups made in the DHT. */
  lookups: number
  /** CIDs resolved through findProviders. */
  resolved: number
  /** Keys answered for other peers. */
  served: number
  /** Bytes of ADD and GET frames written to remote replicas (length prefix included; noise and yamux framing not). */
  sentBytes: number
  /** Keys in those frames: `sentBytes / sentKeys` is what a key costs on the wire. */
  sentKeys: number
}

/** The service factory to pass in libp2p `services`. */
export function providerRecords (init: ProviderRecordsInit): (components: ProviderRecordsComponents) => ProviderRecords {
  return (components) => new ProviderRecords(components, init)
}
