/**
 * The provider-records service: the Startable that composes a replica that stores batched
 * provider records (replica.ts), a publish sweep that sends them to the peers closest to
 * each key (publish.ts), a batched resolver (resolve.ts) over a cache of keyspace regions
 * (regions.ts), and the tasks that republish everything before records expire and sweep
 * expired ones (scheduler.ts).
 */
import { serviceDependencies } from '@libp2p/interface'
import type { AbortOptions, Connection, PeerId, Startable, Stream, StreamHandlerOptions } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import { RecordStore } from './record-store.ts'
import { NotStartedError } from './errors.ts'
import { RecordPublisher } from './publish.ts'
import { RegionCache } from './regions.ts'
import { ReplicaServer } from './replica.ts'
import { RecordResolver } from './resolve.ts'
import { Scheduler } from './scheduler.ts'
import { sessionOpener } from './session.ts'
import {
  PROTOCOL, DEFAULT_REPLICATION, DEFAULT_RECORD_TTL, DEFAULT_REPUBLISH_INTERVAL, DEFAULT_SWEEP_INTERVAL,
  DEFAULT_ADD_BATCH_SIZE, DEFAULT_GET_BATCH_SIZE, DEFAULT_WINDOW, DEFAULT_MESSAGE_TIMEOUT,
  DEFAULT_DIAL_TIMEOUT, DEFAULT_LOOKUP_TIMEOUT, DEFAULT_LOOKUP_ROUNDS, DEFAULT_REGION_CACHE_TTL,
  DEFAULT_MAX_INBOUND_STREAMS, DEFAULT_MAX_OUTBOUND_STREAMS, MAX_RECORD_TTL, MAX_KEYS_PER_MESSAGE
} from './constants.ts'
import type {
  ProviderRecordsComponents, ProviderRecordsInit, ProvideOptions, ProvideResult,
  FindProvidersOptions, ProviderStats
} from './index.ts'

const log = logger('memfabric:providers')

export class ProviderRecords implements Startable {
  readonly store: RecordStore
  private readonly components: ProviderRecordsComponents
  private readonly republishInterval: number
  private readonly sweepInterval: number
  private readonly handlerOptions: StreamHandlerOptions
  private readonly source?: (options?: AbortOptions) => AsyncIterable<CID[]>
  private readonly regions: RegionCache
  private readonly publisher: RecordPublisher
  private readonly resolver: RecordResolver
  private readonly replica: ReplicaServer
  private started = false
  private controller = new AbortController()
  private scheduler = new Scheduler(this.controller.signal)
  private readonly counters: ProviderStats = {
    published: 0, pending: 0, refreshed: 0, failedReplicas: 0, stored: 0, lookups: 0, resolved: 0, served: 0,
    sentBytes: 0, sentKeys: 0
  }

  constructor (components: ProviderRecordsComponents, init: ProviderRecordsInit) {
    this.components = components
    const now = init.now ?? Date.now
    const counters = this.counters
    this.store = new RecordStore({ db: init.db, maxProvidersPerKey: init.maxProvidersPerKey, maxRecordsPerPeer: init.maxRecordsPerPeer, now })
    const replication = init.replication ?? DEFAULT_REPLICATION
    const recordTtl = Math.min(init.recordTtl ?? DEFAULT_RECORD_TTL, MAX_RECORD_TTL)
    const window = init.window ?? DEFAULT_WINDOW
    const messageTimeout = init.messageTimeout ?? DEFAULT_MESSAGE_TIMEOUT
    this.republishInterval = init.republishInterval ?? DEFAULT_REPUBLISH_INTERVAL
    this.sweepInterval = init.sweepInterval ?? DEFAULT_SWEEP_INTERVAL
    this.source = init.source
    this.handlerOptions = {
      maxInboundStreams: init.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS,
      maxOutboundStreams: init.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS
    }
    const open = sessionOpener({
      components,
      dialTimeout: init.dialTimeout ?? DEFAULT_DIAL_TIMEOUT,
      window,
      messageTimeout,
      counters
    })
    this.regions = new RegionCache({
      components,
      lookupRounds: init.lookupRounds ?? DEFAULT_LOOKUP_ROUNDS,
      lookupTimeout: init.lookupTimeout ?? DEFAULT_LOOKUP_TIMEOUT,
      regionCacheTtl: init.regionCacheTtl ?? DEFAULT_REGION_CACHE_TTL,
      counters,
      now
    })
    this.publisher = new RecordPublisher({
      components,
      store: this.store,
      regions: this.regions,
      open,
      replication,
      recordTtl,
      addBatchSize: Math.min(init.addBatchSize ?? DEFAULT_ADD_BATCH_SIZE, MAX_KEYS_PER_MESSAGE),
      counters,
      now
    })
    this.resolver = new RecordResolver({
      components,
      store: this.store,
      regions: this.regions,
      open,
      replication,
      getBatchSize: Math.min(init.getBatchSize ?? DEFAULT_GET_BATCH_SIZE, MAX_KEYS_PER_MESSAGE),
      counters
    })
    this.replica = new ReplicaServer({ store: this.store, window, messageTimeout, recordTtl, counters, now })
    this.handle = this.handle.bind(this)
  }

  readonly [Symbol.toStringTag] = 'memfabric/providers'

  /** libp2p checks at creation that a kad-dht is configured (the service finds it as `components.dht`). */
  readonly [serviceDependencies]: string[] = ['@libp2p/kad-dht']

  /** A snapshot of the counters (for metrics). */
  get stats (): ProviderStats {
    return { ...this.counters }
  }

  isStarted (): boolean {
    return this.started
  }

  async start (): Promise<void> {
    if (this.started) return
    this.controller = new AbortController()
    this.scheduler = new Scheduler(this.controller.signal)
    await this.components.registrar.handle(PROTOCOL, this.handle, this.handlerOptions)
    this.started = true
    // records are served meanwhile, reading every key until the filter is there
    this.scheduler.once('loading the record key filter', async signal => { await this.store.load({ signal }) })
    if (this.source != null) this.scheduler.every(this.republishInterval, async signal => { await this.republish({ signal }) })
    this.scheduler.every(this.sweepInterval, async signal => { await this.store.sweep({ signal }) })
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.controller.abort()
    await this.components.registrar.unhandle(PROTOCOL)
    await this.scheduler.stop()
    this.regions.clear()
  }

  /** Re-announce everything the source lists; pages it no longer lists simply expire. */
  async republish (options: AbortOptions = {}): Promise<ProvideResult> {
    if (this.source == null) return { records: 0, replicas: 0, peers: 0, failedReplicas: 0 }
    const result = await this.provide(this.source(options), options)
    this.counters.refreshed += result.records
    log('republished %d records to %d peers', result.records, result.peers)
    return result
  }

  /**
   * Publish provider records for `cids` (this peer provides them) to the `replication`
   * closest peers of each key. Peers that fail are replaced by the next closest.
   */
  async provide (cids: CID[] | AsyncIterable<CID[]>, options: ProvideOptions = {}): Promise<ProvideResult> {
    this.assertStarted()
    return this.publisher.provide(cids, { ...options, signal: this.linkSignal(options.signal) })
  }

  /**
   * Providers of each CID (keyed by `cid.toString()`), asking the closest replica of each
   * key first and the next ones only for keys still without an answer. Provider addresses
   * are added to the peer store so callers can dial them.
   */
  async findProviders (cids: CID[], options: FindProvidersOptions = {}): Promise<Map<string, PeerId[]>> {
    const found = await this.resolve(cids, options)
    const out = new Map<string, PeerId[]>()
    for (let i = 0; i < cids.length; i++) out.set(cids[i].toString(), found[i])
    return out
  }

  /** Like findProviders, but the answer is aligned with `cids` (no CID strings to build). */
  async resolve (cids: CID[], options: FindProvidersOptions = {}): Promise<PeerId[][]> {
    this.assertStarted()
    return this.resolver.resolve(cids, { ...options, signal: this.linkSignal(options.signal) })
  }

  /** Work started by callers also ends when the service stops. */
  private linkSignal (signal?: AbortSignal): AbortSignal {
    return signal == null ? this.controller.signal : AbortSignal.any([signal, this.controller.signal])
  }

  private assertStarted (): void {
    if (!this.started) throw new NotStartedError('provider records service is not started')
  }

  private async handle (stream: Stream, connection: Connection): Promise<void> {
    await this.replica.handle(stream, connection, this.controller.signal)
  }
}
