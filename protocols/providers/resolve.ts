/**
 * Resolving: the providers of many CIDs, asking the closest replica of each key first and
 * the next ones only for keys still without an answer, in GET frames of `getBatchSize` keys
 * over one pipelined stream per peer.
 */
import type { PeerId } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromMultihash } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import * as Digest from 'multiformats/hashes/digest'
import type { CID } from 'multiformats/cid'
import { indexProviders, packKeys } from './codec.ts'
import type { Response } from './codec.ts'
import { ProtocolError } from './errors.ts'
import { closest } from './keyspace.ts'
import type { Candidate, Entry } from './regions.ts'
import { Run } from './session.ts'
import type { RunInit } from './session.ts'
import { bytesKey } from './utils.ts'
import type { FindProvidersOptions, ProviderRecordsComponents } from './index.ts'

const log = logger('memfabric:providers')

export interface ResolverInit extends RunInit {
  components: Pick<ProviderRecordsComponents, 'peerId' | 'peerStore'>
  /** Keys per GET frame. */
  getBatchSize: number
}

export class RecordResolver {
  private readonly init: ResolverInit

  constructor (init: ResolverInit) {
    this.init = init
  }

  /**
   * Providers of each CID, aligned with `cids`. Provider addresses are added to the peer
   * store so callers can dial them.
   */
  async resolve (cids: CID[], options: FindProvidersOptions): Promise<PeerId[][]> {
    const { regions, counters, replication, getBatchSize } = this.init
    const entries = await regions.place(cids, options)
    const found: PeerId[][] = new Array(cids.length)
    const peerCache = new Map<string, PeerId>()
    const run = new Run(this.init.open, options)

    const absorb = async (answer: Response, group: Entry[]): Promise<void> => {
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
          await this.remember(id, answer.addrs[i])
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

    const ask = async (peer: Candidate, group: Entry[]): Promise<void> => {
      if (peer.self) {
        const { peers, providers } = indexProviders(await this.init.store.get(group.map(e => e.key), options))
        await absorb({ type: 'providers', peers, addrs: peers.map(() => []), providers }, group)
        return
      }
      const session = await run.session(peer)
      await absorb(await session.request({ type: 'get', keys: packKeys(group.map(e => e.key)) }, options), group)
    }

    try {
      const ranked = entries.map(e => closest(e.kad, e.candidates, replication))
      let pending = entries.map((e, i) => i)
      for (let round = 0; round < replication && pending.length > 0; round++) {
        const groups = new Map<string, { peer: Candidate, items: Entry[] }>()
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
          for (let i = 0; i < g.items.length; i += getBatchSize) {
            const chunk = g.items.slice(i, i + getBatchSize)
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
    counters.resolved += cids.length
    for (let i = 0; i < found.length; i++) found[i] ??= []
    return found
  }

  /** Put a provider's addresses (bytes, as a replica sent them) in the peer store. */
  private async remember (id: PeerId, addrs: Uint8Array[]): Promise<void> {
    if (addrs.length === 0 || id.equals(this.init.components.peerId)) return
    const multiaddrs: Multiaddr[] = []
    for (const a of addrs) {
      try { multiaddrs.push(multiaddr(a)) } catch {}
    }
    await this.init.components.peerStore.merge(id, { multiaddrs })
  }
}
