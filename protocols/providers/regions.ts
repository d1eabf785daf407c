/**
 * The region cache: which peers are closest to a part of the keyspace. A region is found by
 * one closest-peers lookup of kad-dht, and every key that falls in it reuses its peers until
 * it expires; a failed peer is dropped from every region.
 */
import type { AbortOptions, PeerId } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import { checkCid, closest, commonPrefixLength, compareKeys, hasPrefix, kadKeyOf, peerKadKey, recordKey } from './keyspace.ts'
import { MAX_CACHED_REGIONS } from './constants.ts'
import { withTimeout } from './utils.ts'
import type { ProviderRecordsComponents, ProviderStats } from './index.ts'

const log = logger('memfabric:providers')

/** How long a whole-network region (fewer than k peers seen) is reused before looking again (ms). */
const WHOLE_NETWORK_REGION_TTL = 30_000

/** A peer that may hold records of a region (self included). */
export interface Candidate {
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

/**
 * One record on its way: record key (16 bytes), kad position, the peers it may go to, and
 * its CID's index in the caller's list.
 */
export interface Entry {
  key: Uint8Array
  kad: Uint8Array
  candidates: Candidate[]
  index: number
}

export interface RegionCacheInit {
  /** Read at each lookup (libp2p's components: the DHT is looked up when first used). */
  components: Pick<ProviderRecordsComponents, 'peerId' | 'peerStore' | 'dht'>
  /** Max repeats of a lookup until no new peer appears. */
  lookupRounds: number
  /** Time allowed per lookup. */
  lookupTimeout: number
  /** How long a region's peers are reused. */
  regionCacheTtl: number
  counters: ProviderStats
  now: () => number
}

export class RegionCache {
  private readonly init: RegionCacheInit
  private regions: Region[] = []
  private selfCandidate?: Candidate

  constructor (init: RegionCacheInit) {
    this.init = init
  }

  /** This peer as a candidate: it holds a copy of its own records when it ranks among the closest. */
  self (): Candidate {
    this.selfCandidate ??= {
      id: this.init.components.peerId,
      key: this.init.components.peerId.toString(),
      kadId: peerKadKey(this.init.components.peerId),
      self: true
    }
    return this.selfCandidate
  }

  /**
   * Kad positions for `cids`, sorted, each with the region's candidates and its record key.
   * The position comes from the whole CID (as before 2.0.0, so placement did not move); only
   * the key sent to and stored by replicas is cut to 16 bytes.
   */
  async place (cids: CID[], options: AbortOptions): Promise<Entry[]> {
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

  /** Forget a peer that failed, so later regions do not pick it again. */
  dropPeer (key: string): void {
    for (const r of this.regions) r.candidates = r.candidates.filter(c => c.key !== key)
  }

  /** Forget every region (at stop). */
  clear (): void {
    this.regions = []
  }

  /**
   * The region around `kad` and its candidate peers: cached, else one lookup of the DHT
   * (repeated until no new peer shows up, as a single walk can miss peers).
   */
  private async regionFor (kad: Uint8Array, rawKey: Uint8Array, options: AbortOptions): Promise<Region> {
    const now = this.init.now()
    for (const r of this.regions) {
      if (r.expires > now && hasPrefix(kad, r.prefix, r.bits)) return r
    }
    const found = new Map<string, Candidate>()
    const dht = this.init.components.dht
    for (let round = 0; round < this.init.lookupRounds; round++) {
      let added = 0
      this.init.counters.lookups++
      try {
        for await (const event of dht.getClosestPeers(rawKey, { signal: withTimeout(this.init.lookupTimeout, options.signal) })) {
          if (event.name !== 'FINAL_PEER') continue
          const key = event.peer.id.toString()
          if (found.has(key) || event.peer.id.equals(this.init.components.peerId)) continue
          found.set(key, { id: event.peer.id, key, kadId: peerKadKey(event.peer.id), self: false })
          added++
          if (event.peer.multiaddrs.length > 0) {
            await this.init.components.peerStore.merge(event.peer.id, { multiaddrs: event.peer.multiaddrs })
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
    let expires = now + this.init.regionCacheTtl
    if (found.size >= dht.k) {
      const farthest = closest(kad, [...found.values()], found.size).pop()
      if (farthest != null) bits = Math.min(commonPrefixLength(kad, farthest.kadId) + 1, 256)
    } else {
      for (const r of this.regions) {
        if (r.bits !== 0) continue
        for (const c of r.candidates) if (!c.self && !found.has(c.key)) found.set(c.key, c)
      }
      expires = now + Math.min(this.init.regionCacheTtl, WHOLE_NETWORK_REGION_TTL)
    }
    const remote = [...found.values()]
    const region: Region = { prefix: kad, bits, candidates: [this.self(), ...remote], expires }
    this.regions = this.regions.filter(r => r.expires > now && !hasPrefix(r.prefix, kad, bits))
    this.regions.push(region)
    if (this.regions.length > MAX_CACHED_REGIONS) this.regions.shift()
    log('region %d bits: %d candidate peers', bits, region.candidates.length)
    return region
  }
}
