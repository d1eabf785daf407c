/**
 * Publishing: records of many CIDs go to the `replication` closest peers of each key, in
 * frames of `addBatchSize` keys over one pipelined stream per peer. A replica that fails
 * hands its records to the peer that now ranks last among the closest (failover).
 */
import type { AbortOptions } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import { packKeys } from './codec.ts'
import { ProtocolError } from './errors.ts'
import { closest } from './keyspace.ts'
import { MAX_ADDRS_PER_PEER, MAX_RECORD_TTL } from './constants.ts'
import type { Candidate, Entry } from './regions.ts'
import { Run } from './session.ts'
import type { RunInit } from './session.ts'
import type { ProviderRecordsComponents, ProvideOptions, ProvideResult } from './index.ts'

const log = logger('memfabric:providers')

export interface PublisherInit extends RunInit {
  components: Pick<ProviderRecordsComponents, 'peerId' | 'addressManager'>
  /** Lifetime asked of replicas unless the caller says otherwise. */
  recordTtl: number
  /** Keys per ADD frame. */
  addBatchSize: number
  now: () => number
}

/** A peer's records not yet sent. */
interface Queue {
  peer: Candidate
  entries: Entry[]
}

export class RecordPublisher {
  private readonly init: PublisherInit

  constructor (init: PublisherInit) {
    this.init = init
  }

  private ownAddrs (): Uint8Array[] {
    return this.init.components.addressManager.getAddresses().slice(0, MAX_ADDRS_PER_PEER).map(a => a.bytes)
  }

  /**
   * Publish provider records for `cids` (this peer provides them) to the `replication`
   * closest peers of each key. Peers that fail are replaced by the next closest.
   */
  async provide (cids: CID[] | AsyncIterable<CID[]>, options: ProvideOptions): Promise<ProvideResult> {
    const { store, regions, counters, replication, addBatchSize, now } = this.init
    const ttl = Math.min(options.ttl ?? this.init.recordTtl, MAX_RECORD_TTL)
    const run = new Run(this.init.open, options)
    const peersUsed = new Set<string>()
    const result = { records: 0, replicas: 0, peers: 0, failedReplicas: 0 }
    const addrs = this.ownAddrs()
    const selfKey = regions.self().key

    const sendFrame = async (peer: Candidate, entries: Entry[], attempt: number): Promise<void> => {
      counters.pending += entries.length
      try {
        if (peer.self) {
          await store.add(this.init.components.peerId.toMultihash().bytes, entries.map(e => e.key), now() + ttl, addrs, options)
        } else {
          await this.send(run, peer, entries, ttl, addrs, options)
        }
        result.replicas += entries.length
        counters.published += entries.length
        peersUsed.add(peer.key)
      } catch (err: any) {
        options.signal?.throwIfAborted()
        if (peer.self) throw err
        log('replica %p failed, moving its records on - %e', peer.id, err)
        run.failed.add(peer.key)
        regions.dropPeer(peer.key)
        await failover(entries, attempt + 1)
      } finally {
        counters.pending -= entries.length
      }
    }

    // records of a failed replica go to the peer that now ranks last among the closest
    const failover = async (entries: Entry[], attempt: number): Promise<void> => {
      const byPeer = new Map<string, Queue>()
      for (const e of entries) {
        const live = e.candidates.filter(c => !run.failed.has(c.key))
        const ranked = closest(e.kad, live, replication)
        const next = attempt <= replication * 2 && ranked.length === replication ? ranked[ranked.length - 1] : undefined
        if (next == null) {
          result.failedReplicas++
          counters.failedReplicas++
          continue
        }
        queueFor(byPeer, next).entries.push(e)
      }
      await Promise.all([...byPeer.values()].map(async g => sendFrame(g.peer, g.entries, attempt)))
    }

    const dispatch = async (batch: CID[]): Promise<{ done: Promise<unknown> }> => {
      const entries = await regions.place(batch, options)
      result.records += entries.length
      const queues = new Map<string, Queue>()
      const frames: Array<Promise<void>> = []
      for (const e of entries) {
        const live = run.failed.size === 0 ? e.candidates : e.candidates.filter(c => !run.failed.has(c.key))
        for (const peer of closest(e.kad, live, replication)) {
          const q = queueFor(queues, peer)
          q.entries.push(e)
          if (q.entries.length >= addBatchSize) {
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

  /** One ADD frame to a remote replica; the provider's addresses go with a stream's first. */
  private async send (run: Run, peer: Candidate, entries: Entry[], ttl: number, addrs: Uint8Array[], options: AbortOptions): Promise<void> {
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
}

function queueFor (queues: Map<string, Queue>, peer: Candidate): Queue {
  let q = queues.get(peer.key)
  if (q == null) queues.set(peer.key, q = { peer, entries: [] })
  return q
}
