/**
 * The provider-records service: a replica that stores batched provider records, a publish
 * sweep that sends them to the peers closest to each key, a batched resolver and the task
 * that republishes everything before records expire.
 */
import type {
  AbortOptions, Connection, PeerId, Startable, Stream, StreamHandlerOptions
} from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'
import { logger } from '@libp2p/logger'
import { peerIdFromMultihash } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { LengthPrefixedStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import * as Digest from 'multiformats/hashes/digest'
import type { CID } from 'multiformats/cid'
import { RecordStore } from './record-store.ts'
import { decodeRequest, decodeResponse, encodeMessage, packKeys, unpackKeys } from './codec.ts'
import type { Request, Response } from './codec.ts'
import { checkCid, closest, commonPrefixLength, compareKeys, hasPrefix, kadKeyOf, peerKadKey, recordKey } from './keyspace.ts'
import { NotStartedError, ProtocolError } from './errors.ts'
import {
  PROTOCOL, DEFAULT_REPLICATION, DEFAULT_RECORD_TTL, DEFAULT_REPUBLISH_INTERVAL, DEFAULT_SWEEP_INTERVAL,
  DEFAULT_ADD_BATCH_SIZE, DEFAULT_GET_BATCH_SIZE, DEFAULT_WINDOW, DEFAULT_MESSAGE_TIMEOUT,
  DEFAULT_DIAL_TIMEOUT, DEFAULT_LOOKUP_TIMEOUT, DEFAULT_LOOKUP_ROUNDS, DEFAULT_REGION_CACHE_TTL,
  DEFAULT_MAX_INBOUND_STREAMS, DEFAULT_MAX_OUTBOUND_STREAMS, MAX_MESSAGE_SIZE, MAX_RECORD_TTL,
  MAX_KEYS_PER_MESSAGE, MAX_CACHED_REGIONS, MAX_ADDRS_PER_PEER, KEY_LENGTH
} from './constants.ts'
import type {
  ProviderRecordsComponents, ProviderRecordsInit, ProvideOptions, ProvideResult,
  FindProvidersOptions, ProviderStats
} from './index.ts'

const log = logger('memfabric:providers')

/** A peer that may hold records of a region (self included). */
interface Candidate {
  id: PeerId
  key: string
  kadId: Uint8Array
  self: boolean
}

/** A keyspace region (`bits` leading bits of `prefix`) and the peers found closest to it. */
interface Region {
  prefix: Uint8Array
  bits: number
  candidates: Candidate[]
  expires: number
}

/** One record on its way: record key (16 bytes), kad position, the peers it may go to. */
interface Entry {
  key: Uint8Array
  kad: Uint8Array
  candidates: Candidate[]
}

/** A map key for bytes without copying them. */
function bytesKey (u: Uint8Array): string {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString('latin1')
}

/** Bytes of the unsigned-varint length prefix lpStream puts before a frame of `n` bytes. */
function prefixLength (n: number): number {
  let len = 1
  while (n >= 0x80) { n = Math.floor(n / 0x80); len++ }
  return len
}

function withTimeout (ms: number, signal?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(ms)
  return signal == null ? timeout : AbortSignal.any([timeout, signal])
}

/**
 * One outbound stream to a replica carrying pipelined requests: at most `window` frames are
 * unanswered; answers come back in order.
 */
class PeerSession {
  private readonly stream: Stream
  private readonly lp: LengthPrefixedStream<Stream>
  private readonly window: number
  private readonly timeout: number
  private readonly counters: ProviderStats
  private inflight = 0
  private readonly waiters: Array<() => void> = []
  private readChain: Promise<unknown> = Promise.resolve()
  failure?: Error
  /** The provider's addresses go with the first ADD of a stream only. */
  addrsSent = false

  constructor (stream: Stream, window: number, timeout: number, counters: ProviderStats) {
    this.stream = stream
    this.lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_SIZE })
    this.window = window
    this.timeout = timeout
    this.counters = counters
  }

  async request (message: Request, options?: AbortOptions): Promise<Response> {
    while (this.inflight >= this.window && this.failure == null) {
      await new Promise<void>(resolve => this.waiters.push(resolve))
    }
    if (this.failure != null) throw this.failure
    this.inflight++
    try {
      const bytes = encodeMessage(message)
      // queue the read before the write: lp.write sends synchronously, so read order = send order
      const answer = this.readChain.then(async () => {
        if (this.failure != null) throw this.failure
        const frame = await this.lp.read({ signal: withTimeout(this.timeout, options?.signal) })
        return decodeResponse(frame)
      })
      this.readChain = answer.catch(() => {})
      await this.lp.write(bytes, { signal: withTimeout(this.timeout, options?.signal) })
      this.counters.sentBytes += prefixLength(bytes.byteLength) + bytes.byteLength
      this.counters.sentKeys += message.keys.byteLength / KEY_LENGTH
      const response = await answer
      if (response.type !== (message.type === 'add' ? 'added' : 'providers')) {
        throw new ProtocolError(`expected an answer to ${message.type}, got ${response.type}`)
      }
      return response
    } catch (err: any) {
      this.fail(err)
      throw err
    } finally {
      this.inflight--
      this.waiters.shift()?.()
    }
  }

  fail (err: Error): void {
    if (this.failure != null) return
    this.failure = err
    this.stream.abort(err)
    for (const wake of this.waiters.splice(0)) wake()
  }

  async close (options?: AbortOptions): Promise<void> {
    if (this.failure != null) return
    await this.readChain
    try {
      await this.stream.close({ signal: withTimeout(this.timeout, options?.signal) })
    } catch (err: any) {
      this.stream.abort(err)
    }
  }
}

/** How long a whole-network region (fewer than k peers seen) is reused before looking again (ms). */
const WHOLE_NETWORK_REGION_TTL = 30_000

/** Counters of a running publish or resolve (outbound streams per peer, failed peers). */
class Run {
  readonly sessions = new Map<string, Promise<PeerSession>>()
  readonly failed = new Set<string>()
  readonly options: AbortOptions
  private readonly owner: ProviderRecords

  constructor (owner: ProviderRecords, options: AbortOptions) {
    this.owner = owner
    this.options = options
  }

  session (peer: Candidate): Promise<PeerSession> {
    let s = this.sessions.get(peer.key)
    if (s == null) {
      s = this.owner.openSession(peer.id, this.options)
      this.sessions.set(peer.key, s)
      s.catch(() => {})
    }
    return s
  }

  async close (): Promise<void> {
    await Promise.all([...this.sessions.values()].map(async s => {
      try { await (await s).close(this.options) } catch {}
    }))
  }
}

export class ProviderRecords implements Startable {
  readonly store: RecordStore
  private readonly components: ProviderRecordsComponents
  private readonly replication: number
  private readonly recordTtl: number
  private readonly republishInterval: number
  private readonly sweepInterval: number
  private readonly addBatchSize: number
  private readonly getBatchSize: number
  private readonly window: number
  private readonly messageTimeout: number
  private readonly dialTimeout: number
  private readonly lookupTimeout: number
  private readonly lookupRounds: number
  private readonly regionCacheTtl: number
  private readonly handlerOptions: StreamHandlerOptions
  private readonly dhtService: string
  private readonly source?: (options?: AbortOptions) => AsyncIterable<CID[]>
  private readonly now: () => number
  private regions: Region[] = []
  private selfCandidate?: Candidate
  private started = false
  private controller = new AbortController()
  private timers: Array<ReturnType<typeof setTimeout>> = []
  private readonly tasks = new Set<Promise<unknown>>()
  private readonly counters: ProviderStats = {
    published: 0, pending: 0, refreshed: 0, failedReplicas: 0, stored: 0, lookups: 0, resolved: 0, served: 0,
    sentBytes: 0, sentKeys: 0
  }

  constructor (components: ProviderRecordsComponents, init: ProviderRecordsInit) {
    this.components = components
    this.now = init.now ?? Date.now
    this.store = new RecordStore({ db: init.db, maxProvidersPerKey: init.maxProvidersPerKey, now: this.now })
    this.replication = init.replication ?? DEFAULT_REPLICATION
    this.recordTtl = Math.min(init.recordTtl ?? DEFAULT_RECORD_TTL, MAX_RECORD_TTL)
    this.republishInterval = init.republishInterval ?? DEFAULT_REPUBLISH_INTERVAL
    this.sweepInterval = init.sweepInterval ?? DEFAULT_SWEEP_INTERVAL
    this.addBatchSize = Math.min(init.addBatchSize ?? DEFAULT_ADD_BATCH_SIZE, MAX_KEYS_PER_MESSAGE)
    this.getBatchSize = Math.min(init.getBatchSize ?? DEFAULT_GET_BATCH_SIZE, MAX_KEYS_PER_MESSAGE)
    this.window = init.window ?? DEFAULT_WINDOW
    this.messageTimeout = init.messageTimeout ?? DEFAULT_MESSAGE_TIMEOUT
    this.dialTimeout = init.dialTimeout ?? DEFAULT_DIAL_TIMEOUT
    this.lookupTimeout = init.lookupTimeout ?? DEFAULT_LOOKUP_TIMEOUT
    this.lookupRounds = init.lookupRounds ?? DEFAULT_LOOKUP_ROUNDS
    this.regionCacheTtl = init.regionCacheTtl ?? DEFAULT_REGION_CACHE_TTL
    this.dhtService = init.dhtService ?? 'dht'
    this.source = init.source
    this.handlerOptions = {
      maxInboundStreams: init.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS,
      maxOutboundStreams: init.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS
    }
    this.handle = this.handle.bind(this)
  }

  readonly [Symbol.toStringTag] = 'memfabric/providers'

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
    await this.components.registrar.handle(PROTOCOL, this.handle, this.handlerOptions)
    this.started = true
    // records are served meanwhile, reading every key until the filter is there
    const load = this.store.load({ signal: this.controller.signal })
      .catch(err => { if (!this.controller.signal.aborted) log.error('loading the record key filter failed - %e', err) })
      .finally(() => { this.tasks.delete(load) })
    this.tasks.add(load)
    if (this.source != null) this.schedule(this.republishInterval, async signal => { await this.republish({ signal }) })
    this.schedule(this.sweepInterval, async signal => { await this.store.sweep({ signal }) })
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.controller.abort()
    for (const t of this.timers) clearTimeout(t)
    this.timers = []
    await this.components.registrar.unhandle(PROTOCOL)
    await Promise.allSettled([...this.tasks])
    this.regions = []
  }

  /** Run `fn` every `interval` ms (never overlapping itself) until stop. */
  private schedule (interval: number, fn: (signal: AbortSignal) => Promise<void>): void {
    const signal = this.controller.signal
    const tick = (): void => {
      if (signal.aborted) return
      const task = fn(signal)
        .catch(err => { if (!signal.aborted) log.error('periodic task failed - %e', err) })
        .finally(() => {
          this.tasks.delete(task)
          if (!signal.aborted) this.timers.push(setTimeout(tick, interval).unref())
        })
      this.tasks.add(task)
    }
    this.timers.push(setTimeout(tick, interval).unref())
  }

  /** Re-announce everything the source lists; pages it no longer lists simply expire. */
  async republish (options: AbortOptions = {}): Promise<ProvideResult> {
    if (this.source == null) return { records: 0, replicas: 0, peers: 0, failedReplicas: 0 }
    const result = await this.provide(this.source(options), options)
    this.counters.refreshed += result.records
    log('republished %d records to %d peers', result.records, result.peers)
    return result
  }

  /** Work started by callers also ends when the service stops. */
  private linkSignal (signal?: AbortSignal): AbortSignal {
    return signal == null ? this.controller.signal : AbortSignal.any([signal, this.controller.signal])
  }

  private assertStarted (): void {
    if (!this.started) throw new NotStartedError('provider records service is not started')
  }

  private get dht (): KadDHT {
    return (this.components as any)[this.dhtService] as KadDHT
  }

  private self (): Candidate {
    this.selfCandidate ??= {
      id: this.components.peerId,
      key: this.components.peerId.toString(),
      kadId: peerKadKey(this.components.peerId),
      self: true
    }
    return this.selfCandidate
  }

  private ownAddrs (): Uint8Array[] {
    return this.components.addressManager.getAddresses().slice(0, MAX_ADDRS_PER_PEER).map(a => a.bytes)
  }

  /** @internal open a pipelined stream to a replica. */
  async openSession (peer: PeerId, options: AbortOptions): Promise<PeerSession> {
    const stream = await this.components.connectionManager.openStream(peer, PROTOCOL, {
      signal: withTimeout(this.dialTimeout, options.signal)
    })
    return new PeerSession(stream, this.window, this.messageTimeout, this.counters)
  }

  // ---------------------------------------------------------------- regions

  /**
   * The region around `kad` and its candidate peers: cached, else one lookup of the DHT
   * (repeated until no new peer shows up, as a single walk can miss peers).
   */
  private async regionFor (kad: Uint8Array, rawKey: Uint8Array, options: AbortOptions): Promise<Region> {
    const now = this.now()
    for (const r of this.regions) {
      if (r.expires > now && hasPrefix(kad, r.prefix, r.bits)) return r
    }
    const found = new Map<string, Candidate>()
    const dht = this.dht
    for (let round = 0; round < this.lookupRounds; round++) {
      let added = 0
      this.counters.lookups++
      try {
        for await (const event of dht.getClosestPeers(rawKey, { signal: withTimeout(this.lookupTimeout, options.signal) })) {
          if (event.name !== 'FINAL_PEER') continue
          const key = event.peer.id.toString()
          if (found.has(key) || event.peer.id.equals(this.components.peerId)) continue
          found.set(key, { id: event.peer.id, key, kadId: peerKadKey(event.peer.id), self: false })
          added++
          if (event.peer.multiaddrs.length > 0) {
            await this.components.peerStore.merge(event.peer.id, { multiaddrs: event.peer.multiaddrs })
          }
        }
      } catch (err: any) {
        options.signal?.throwIfAborted()
        log.error('closest-peers lookup failed - %e', err)
      }
      if (added === 0) break
    }
    // the lookup returns the dht.k closest peers; fewer means it saw the whole network - or, on
    // a loaded host whose lookups timed out, part of it: then keep the peers earlier
    // whole-network lookups found (failed ones were dropped) and look again soon, so that a
    // publisher and a resolver do not settle on different subsets for minutes
    let bits = 0
    let expires = now + this.regionCacheTtl
    if (found.size >= dht.k) {
      const farthest = closest(kad, [...found.values()], found.size).pop()
      if (farthest != null) bits = Math.min(commonPrefixLength(kad, farthest.kadId) + 1, 256)
    } else {
      for (const r of this.regions) {
        if (r.bits !== 0) continue
        for (const c of r.candidates) if (!c.self && !found.has(c.key)) found.set(c.key, c)
      }
      expires = now + Math.min(this.regionCacheTtl, WHOLE_NETWORK_REGION_TTL)
    }
    const remote = [...found.values()]
    const region: Region = { prefix: kad, bits, candidates: [this.self(), ...remote], expires }
    this.regions = this.regions.filter(r => r.expires > now && !hasPrefix(r.prefix, kad, bits))
    this.regions.push(region)
    if (this.regions.length > MAX_CACHED_REGIONS) this.regions.shift()
    log('region %d bits: %d candidate peers', bits, region.candidates.length)
    return region
  }

  /** Forget a peer that failed, so later regions do not pick it again. */
  private dropPeer (key: string): void {
    for (const r of this.regions) r.candidates = r.candidates.filter(c => c.key !== key)
  }

  /**
   * Kad positions for `cids`, sorted, each with the region's candidates and its record key.
   * The position comes from the whole CID (as before 2.0.0, so placement did not move); only
   * the key sent to and stored by replicas is cut to 16 bytes.
   */
  private async place (cids: CID[], options: AbortOptions): Promise<Array<Entry & { index: number }>> {
    const entries = cids.map((cid, index) => {
      checkCid(cid)
      const raw = cid.multihash.bytes
      const kad = kadKeyOf(raw)
      // the top 48 bits order almost every pair without a call into Buffer.compare
      const top = kad[0] * 2 ** 40 + kad[1] * 2 ** 32 + ((kad[2] << 24 | kad[3] << 16 | kad[4] << 8 | kad[5]) >>> 0)
      return { key: recordKey(cid.multihash.digest), kad, top, raw, index, candidates: [] as Candidate[] }
    })
    entries.sort((a, b) => (a.top - b.top) || compareKeys(a.kad, b.kad))
    let region: Region | undefined
    for (const e of entries) {
      if (region == null || !hasPrefix(e.kad, region.prefix, region.bits)) {
        region = await this.regionFor(e.kad, e.raw, options)
      }
      e.candidates = region.candidates
    }
    return entries
  }

  // ---------------------------------------------------------------- publish

  /**
   * Publish provider records for `cids` (this peer provides them) to the `replication`
   * closest peers of each key. Peers that fail are replaced by the next closest.
   */
  async provide (cids: CID[] | AsyncIterable<CID[]>, options: ProvideOptions = {}): Promise<ProvideResult> {
    this.assertStarted()
    options = { ...options, signal: this.linkSignal(options.signal) }
    const ttl = Math.min(options.ttl ?? this.recordTtl, MAX_RECORD_TTL)
    const run = new Run(this, options)
    const peersUsed = new Set<string>()
    const result = { records: 0, replicas: 0, peers: 0, failedReplicas: 0 }
    const addrs = this.ownAddrs()
    const selfKey = this.self().key

    const sendFrame = async (peer: Candidate, entries: Entry[], attempt: number): Promise<void> => {
      this.counters.pending += entries.length
      try {
        if (peer.self) {
          await this.store.add(this.components.peerId.toMultihash().bytes, entries.map(e => e.key), this.now() + ttl, addrs, options)
        } else {
          const session = await run.session(peer)
          const first = !session.addrsSent
          session.addrsSent = true
          const res = await session.request({
            type: 'add', keys: packKeys(entries.map(e => e.key)), ttl, addrs: first ? addrs : undefined
          }, options)
          if (res.type === 'added' && res.count !== entries.length) {
            throw new ProtocolError(`replica stored ${res.count} of ${entries.length} records`)
          }
        }
        result.replicas += entries.length
        this.counters.published += entries.length
        peersUsed.add(peer.key)
      } catch (err: any) {
        options.signal?.throwIfAborted()
        if (peer.self) throw err
        log('replica %p failed, moving its records on - %e', peer.id, err)
        run.failed.add(peer.key)
        this.dropPeer(peer.key)
        await failover(entries, attempt + 1)
      } finally {
        this.counters.pending -= entries.length
      }
    }

    // records of a failed replica go to the peer that now ranks last among the closest
    const failover = async (entries: Entry[], attempt: number): Promise<void> => {
      const byPeer = new Map<string, { peer: Candidate, entries: Entry[] }>()
      for (const e of entries) {
        const live = e.candidates.filter(c => !run.failed.has(c.key))
        const ranked = closest(e.kad, live, this.replication)
        const next = attempt <= this.replication * 2 && ranked.length === this.replication ? ranked[ranked.length - 1] : undefined
        if (next == null) {
          result.failedReplicas++
          this.counters.failedReplicas++
          continue
        }
        let group = byPeer.get(next.key)
        if (group == null) byPeer.set(next.key, group = { peer: next, entries: [] })
        group.entries.push(e)
      }
      await Promise.all([...byPeer.values()].map(async g => sendFrame(g.peer, g.entries, attempt)))
    }

    const dispatch = async (batch: CID[]): Promise<{ done: Promise<unknown> }> => {
      const entries = await this.place(batch, options)
      result.records += entries.length
      const queues = new Map<string, { peer: Candidate, entries: Entry[] }>()
      const frames: Array<Promise<void>> = []
      for (const e of entries) {
        const live = run.failed.size === 0 ? e.candidates : e.candidates.filter(c => !run.failed.has(c.key))
        for (const peer of closest(e.kad, live, this.replication)) {
          let q = queues.get(peer.key)
          if (q == null) queues.set(peer.key, q = { peer, entries: [] })
          q.entries.push(e)
          if (q.entries.length >= this.addBatchSize) {
            frames.push(sendFrame(peer, q.entries, 0))
            q.entries = []
          }
        }
      }
      for (const q of queues.values()) {
        if (q.entries.length > 0) frames.push(sendFrame(q.peer, q.entries, 0))
      }
      const done = Promise.all(frames)
      done.catch(() => {}) // awaited later; keep it from counting as unhandled meanwhile
      return { done }
    }

    try {
      let previous: Promise<unknown> = Promise.resolve()
      const batches: Iterable<CID[]> | AsyncIterable<CID[]> = Array.isArray(cids) ? [cids] : cids
      for await (const batch of batches) {
        options.signal?.throwIfAborted()
        if (batch.length === 0) continue
        // place the next batch while the previous one is still on the wire, no further ahead
        const sent = await dispatch(batch)
        await previous
        previous = sent.done
      }
      await previous
    } finally {
      await run.close()
    }
    result.peers = peersUsed.size - (peersUsed.has(selfKey) ? 1 : 0)
    log('published %d records as %d replicas on %d peers', result.records, result.replicas, result.peers)
    return result
  }

  // ---------------------------------------------------------------- resolve

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
    options = { ...options, signal: this.linkSignal(options.signal) }
    const entries = await this.place(cids, options)
    const found: PeerId[][] = new Array(cids.length)
    const peerCache = new Map<string, PeerId>()
    const run = new Run(this, options)

    const absorb = async (answer: Response, group: Array<Entry & { index: number }>): Promise<void> => {
      if (answer.type !== 'providers') return
      if (answer.providers.length !== group.length) throw new ProtocolError('answer does not match the keys asked')
      const ids: PeerId[] = []
      for (let i = 0; i < answer.peers.length; i++) {
        const bytes = answer.peers[i]
        const key = bytesKey(bytes)
        let id = peerCache.get(key)
        if (id == null) {
          id = peerIdFromMultihash(Digest.decode(bytes))
          peerCache.set(key, id)
          const addrs = answer.addrs[i]
          if (addrs.length > 0 && !id.equals(this.components.peerId)) {
            const multiaddrs: Multiaddr[] = []
            for (const a of addrs) {
              try { multiaddrs.push(multiaddr(a)) } catch {}
            }
            await this.components.peerStore.merge(id, { multiaddrs })
          }
        }
        ids.push(id)
      }
      for (let j = 0; j < group.length; j++) {
        const list = answer.providers[j]
        if (list.length === 0) continue
        const idx = group[j].index
        const have = found[idx]
        if (have == null) {
          found[idx] = list.map(p => ids[p])
          continue
        }
        // one PeerId object per peer within a call: identity is enough to dedupe
        for (const p of list) {
          if (!have.includes(ids[p])) have.push(ids[p])
        }
      }
    }

    const ask = async (peer: Candidate, group: Array<Entry & { index: number }>): Promise<void> => {
      if (peer.self) {
        const lists = await this.store.get(group.map(e => e.key), options)
        const peers: Uint8Array[] = []
        const index = new Map<string, number>()
        const providers = lists.map(list => list.map(p => {
          const k = bytesKey(p)
          let i = index.get(k)
          if (i == null) { index.set(k, i = peers.length); peers.push(p) }
          return i
        }))
        await absorb({ type: 'providers', peers, addrs: peers.map(() => []), providers }, group)
        return
      }
      const session = await run.session(peer)
      await absorb(await session.request({ type: 'get', keys: packKeys(group.map(e => e.key)) }, options), group)
    }

    try {
      const ranked = entries.map(e => closest(e.kad, e.candidates, this.replication))
      let pending = entries.map((e, i) => i)
      for (let round = 0; round < this.replication && pending.length > 0; round++) {
        const groups = new Map<string, { peer: Candidate, items: Array<Entry & { index: number }> }>()
        for (const i of pending) {
          const targets = options.queryAll === true ? ranked[i] : ranked[i].slice(round, round + 1)
          for (const peer of targets) {
            if (run.failed.has(peer.key)) continue
            let g = groups.get(peer.key)
            if (g == null) groups.set(peer.key, g = { peer, items: [] })
            g.items.push(entries[i])
          }
        }
        const work: Array<Promise<void>> = []
        for (const g of groups.values()) {
          for (let i = 0; i < g.items.length; i += this.getBatchSize) {
            const chunk = g.items.slice(i, i + this.getBatchSize)
            work.push(ask(g.peer, chunk).catch(err => {
              options.signal?.throwIfAborted()
              log('replica %p did not answer - %e', g.peer.id, err)
              run.failed.add(g.peer.key)
            }))
          }
        }
        await Promise.all(work)
        if (options.queryAll === true) break
        pending = pending.filter(i => found[entries[i].index] == null)
      }
    } finally {
      await run.close()
    }
    this.counters.resolved += cids.length
    for (let i = 0; i < found.length; i++) found[i] ??= []
    return found
  }

  // ---------------------------------------------------------------- server

  /** Serve pipelined ADD / GET frames on one inbound stream until the remote closes it. */
  private async handle (stream: Stream, connection: Connection): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_SIZE })
    const provider = connection.remotePeer.toMultihash().bytes
    const signal = this.controller.signal
    // up to `window` frames are worked on at once (the store's threads overlap); answers
    // still leave in request order through one write chain
    let writes: Promise<void> = Promise.resolve()
    let inflight = 0
    let slot: PromiseWithResolvers<void> | undefined
    let failed = false
    const fail = (err: Error, what: string): void => {
      if (failed) return
      failed = true
      log('%s from %p, resetting - %e', what, connection.remotePeer, err)
      stream.abort(err)
    }
    while (!failed) {
      let request: Request
      try {
        // re-armed per frame: an idle or stalled client is cut off
        const frame = await lp.read({ signal: withTimeout(this.messageTimeout, signal) })
        request = decodeRequest(frame)
      } catch (err: any) {
        if (err.name === 'UnexpectedEOFError' && stream.readBufferLength === 0) {
          // the client closed its side between frames: a clean end once answers are out
          await writes
          if (failed) return
          try { await stream.close({ signal: withTimeout(this.messageTimeout, signal) }) } catch (e: any) { stream.abort(e) }
          return
        }
        fail(err, 'bad or late frame')
        return
      }
      inflight++
      const answer = this.answer(provider, request, signal)
      answer.catch(() => {})
      writes = writes.then(async () => {
        if (failed) return
        try {
          const response = await answer
          await lp.write(encodeMessage(response), { signal: withTimeout(this.messageTimeout, signal) })
        } catch (err: any) {
          fail(err, `failed to answer ${request.type}`)
        } finally {
          inflight--
          slot?.resolve()
        }
      })
      while (inflight >= this.window && !failed) {
        slot = Promise.withResolvers()
        await slot.promise
      }
    }
  }

  private async answer (provider: Uint8Array, request: Request, signal: AbortSignal): Promise<Response> {
    const keys = unpackKeys(request.keys)
    if (request.type === 'add') {
      const ttl = Math.min(request.ttl ?? this.recordTtl, MAX_RECORD_TTL)
      const count = await this.store.add(provider, keys, this.now() + ttl, request.addrs, { signal })
      this.counters.stored += count
      return { type: 'added', count }
    }
    const lists = await this.store.get(keys, { signal })
    const peers: Uint8Array[] = []
    const index = new Map<string, number>()
    const providers = lists.map(list => list.map(p => {
      const k = bytesKey(p)
      let i = index.get(k)
      if (i == null) { index.set(k, i = peers.length); peers.push(p) }
      return i
    }))
    const addrs = await this.store.getAddrs(peers, { signal })
    this.counters.served += keys.length
    return { type: 'providers', peers, addrs, providers }
  }
}
