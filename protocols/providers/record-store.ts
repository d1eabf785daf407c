/**
 * Provider records held by a replica, in three level sublevels:
 *
 * - `e` (entries): `<16-byte record key><u32 peer number>` → `<f64 expiry ms>`, one entry per
 *   provider of a key. An ADD is a blind write: one batch, no read. (The previous layout kept
 *   a key's providers in one value, so an ADD of a key already provided read it first; those
 *   reads kept LevelDB's mapped tables resident — a replica's memory — and a node re-announcing
 *   pages another peer announced, as a migration's destination does, read every one.)
 * - `n` (peer numbers): `<u32 number>` → peer id bytes, every provider ever recorded (a few
 *   bytes each; numbers are never reused), all in memory once read.
 * - `p` (peers): `<peer id bytes>` → dag-cbor `{ addrs, expires }`, one entry per provider peer.
 *
 * In memory there is a Bloom filter of the (key, peer number) pairs held (~1.25 bytes per
 * entry, key-filter.ts), loaded by `load()`, and the numbers of the peers with entries. A GET
 * probes the filter for each key under each such peer and reads only the pairs it may hold:
 * ONE `getMany` per call, a key's entries side by side in one block. Before `load()` every
 * pair of a key and a known peer is read.
 *
 * A providing peer holds at most `maxRecordsPerPeer` entries: an ADD writes none past it, so
 * one member cannot fill a replica's disk. Counts per peer come from the load scan and the
 * sweep (exact) and from ADDs in between (a key the filter holds is a refresh, not counted).
 * (The file is over ~400 lines: the filter, the bound and the sweep share that state.)
 *
 * A key holds at most one entry per provider; GET returns the `maxProvidersPerKey` that expire
 * last, and the sweep trims keys above it.
 *
 * Records of earlier versions (sublevels `q` and `r`) are converted or dropped by `load()`
 * (record-store-upgrade.ts).
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { AbortOptions } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { RecordStoreError } from './errors.ts'
import { KeyFilter } from './key-filter.ts'
import { DEFAULT_MAX_PROVIDERS_PER_KEY, DEFAULT_MAX_RECORDS_PER_PEER, KEY_LENGTH, MAX_ADDRS_PER_PEER, MAX_PROVIDERS_PER_KEY_RESPONSE } from './constants.ts'
import { ENTRY_KEY_LENGTH, EXPIRY_LENGTH, LOAD_CHUNK, PEER_NUMBER_LENGTH, entryKeys, entryPeer, rawSublevel, readExpiry } from './record-layout.ts'
import type { Db, Sub } from './record-layout.ts'
import { RecordStoreUpgrade } from './record-store-upgrade.ts'

const log = logger('memfabric:providers:store')

const SWEEP_CHUNK = 1000
/** Raw keys and values on the root database, whatever its default encodings. */
const RAW = { keyEncoding: 'buffer', valueEncoding: 'buffer' } as const

export interface RecordStoreInit {
  /** Root or sublevel of the node's database; three sublevels are made inside it. */
  db: Db
  /** Providers returned and kept per key (default DEFAULT_MAX_PROVIDERS_PER_KEY). */
  maxProvidersPerKey?: number
  /** Entries kept per providing peer; ADD keys past it are not written (default DEFAULT_MAX_RECORDS_PER_PEER). */
  maxRecordsPerPeer?: number
  /** Clock in ms, for tests (default Date.now). */
  now?: () => number
}

/** Keys of another width are a caller's bug (the codec checks what comes off the wire). */
function checkWidth (keys: Uint8Array[]): void {
  for (const key of keys) {
    if (key.byteLength !== KEY_LENGTH) throw new RangeError(`a record key is ${KEY_LENGTH} bytes, got ${key.byteLength}`)
  }
}

function asBuffer (u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength)
}

/** The records of `sub` in chunks of SWEEP_CHUNK; the iterator is closed however the loop ends. */
async function * chunks (sub: Sub, options?: AbortOptions): AsyncGenerator<Array<[Buffer, Buffer]>> {
  const it = sub.iterator()
  try {
    while (true) {
      options?.signal?.throwIfAborted()
      const chunk = await it.nextv(SWEEP_CHUNK)
      if (chunk.length === 0) return
      yield chunk
    }
  } finally {
    await it.close()
  }
}

/** Filters over (key, peer number) pairs, the numbers of the peers with entries, and their entry counts. */
interface Held {
  filter: KeyFilter
  peers: Set<number>
  counts: Map<number, number>
}

function bump (counts: Map<number, number> | undefined, peer: number, n: number): void {
  if (counts != null && n > 0) counts.set(peer, (counts.get(peer) ?? 0) + n)
}

export class RecordStore {
  private readonly entries: Sub
  private readonly peers: Sub
  private readonly numbers: Sub
  /** Converts records of earlier layouts, at each load. */
  private readonly upgrade: RecordStoreUpgrade
  /** Peer id bytes by number, and numbers by peer id (latin1); read once from `numbers`. */
  private readonly peerIds: Uint8Array[] = []
  private readonly peerNumbers = new Map<string, number>()
  private numbersRead?: Promise<void>
  /**
   * The root database and the entries sublevel's full prefix on it (both public properties of
   * a sublevel): ADD and GET build every prefixed key of a call in one buffer and go to the
   * root, where the sublevel would allocate and concatenate a prefixed key per entry.
   */
  private readonly root: Db
  private readonly entryPrefix: Buffer
  private readonly maxProvidersPerKey: number
  private readonly maxRecordsPerPeer: number
  /** Entries per peer written before the filter is loaded (every key counted as new). */
  private readonly unloadedCounts = new Map<number, number>()
  private readonly now: () => number
  /** A sweep's re-read and delete must not interleave with an ADD refreshing the same entry. */
  private writeLock: Promise<unknown> = Promise.resolve()
  /** Pairs that may be held; undefined until loaded (then every known peer is read). */
  private held?: Held
  /** What a scan is filling; ADDs go into it too, so it misses nothing. */
  private building?: Held
  private loading?: Promise<void>
  /** Peers a sweep in progress found with live entries, and how many. */
  private sweeping?: Map<number, number>

  constructor (init: RecordStoreInit) {
    this.entries = rawSublevel(init.db, 'e')
    this.peers = rawSublevel(init.db, 'p')
    this.numbers = rawSublevel(init.db, 'n')
    this.root = this.entries.db
    this.entryPrefix = Buffer.from(this.entries.prefix, 'utf8')
    this.upgrade = new RecordStoreUpgrade({ db: init.db, entries: this.entries, locked: async fn => this.locked(fn) })
    this.maxProvidersPerKey = init.maxProvidersPerKey ?? DEFAULT_MAX_PROVIDERS_PER_KEY
    this.maxRecordsPerPeer = init.maxRecordsPerPeer ?? DEFAULT_MAX_RECORDS_PER_PEER
    this.now = init.now ?? Date.now
  }

  /**
   * Load the filter of held pairs (a scan of every entry key; ADDs and GETs work meanwhile,
   * reading every known peer's pair), after deleting records of earlier versions and entries
   * of another width. Called again it rebuilds the filter, e.g. after a sweep deleted many.
   */
  async load (options?: AbortOptions): Promise<void> {
    this.loading ??= this.scan(Math.max(this.held?.filter.count ?? 0, 1) * 2, options).finally(() => { this.loading = undefined })
    await this.loading
  }

  private async scan (capacity: number, options?: AbortOptions): Promise<void> {
    await this.upgrade.run(options)
    while (true) {
      // set before the iterator takes its snapshot: an entry committed later is added by its ADD
      const held: Held = { filter: new KeyFilter(capacity), peers: new Set(), counts: new Map() }
      this.building = held
      const it = this.entries.keys()
      try {
        while (!held.filter.full) {
          options?.signal?.throwIfAborted()
          const keys = await it.nextv(LOAD_CHUNK)
          if (keys.length === 0) break
          let stale: Buffer[] | undefined
          for (const key of keys) {
            if (key.byteLength !== ENTRY_KEY_LENGTH) {
              (stale ??= []).push(key)
              continue
            }
            const peer = entryPeer(key)
            held.filter.add(key, 0, peer)
            held.peers.add(peer)
            bump(held.counts, peer, 1)
          }
          // no ADD writes a key of another width, so these deletes race nothing
          if (stale != null) await this.entries.batch(stale.map(key => ({ type: 'del' as const, key })))
        }
      } catch (err: any) {
        if (this.building === held) this.building = undefined
        if (err.name === 'AbortError') throw err
        throw new RecordStoreError(`loading provider records failed: ${err.message}`, { cause: err })
      } finally {
        await it.close()
      }
      if (!held.filter.full) {
        this.held = held
        this.building = undefined
        log('filter of %d provider entries of %d peers loaded', held.filter.count, held.peers.size)
        return
      }
      capacity = held.filter.count * 4 // more entries than guessed: start over, bigger
    }
  }

  /** Read the peer numbers once. */
  private async readNumbers (): Promise<void> {
    this.numbersRead ??= (async () => {
      for await (const [key, id] of this.numbers.iterator()) {
        if (key.byteLength !== PEER_NUMBER_LENGTH) continue
        const n = key.readUInt32BE(0)
        this.peerIds[n] = id
        this.peerNumbers.set(id.toString('latin1'), n)
      }
    })().catch(err => {
      this.numbersRead = undefined
      throw new RecordStoreError(`reading provider numbers failed: ${err.message}`, { cause: err })
    })
    await this.numbersRead
  }

  private async locked<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.writeLock.then(fn, fn)
    this.writeLock = run.catch(() => {})
    return run
  }

  /**
   * Record `provider` for every 16-byte record key until `expires`, and remember its addresses.
   * One atomic batch for the whole call, no read. Keys that would take the provider past
   * `maxRecordsPerPeer` entries are not written (a key the filter says it holds is a refresh
   * and always is). Returns the number of keys written.
   */
  async add (provider: Uint8Array, offered: Uint8Array[], expires: number, addrs?: Uint8Array[], options?: AbortOptions): Promise<number> {
    if (offered.length === 0) return 0
    checkWidth(offered)
    return this.locked(async () => {
      options?.signal?.throwIfAborted()
      await this.readNumbers()
      const peerId = asBuffer(provider)
      const known = this.peerNumbers.get(peerId.toString('latin1'))
      const peer = known ?? this.peerIds.length
      const { keys, fresh } = this.withinBound(peer, offered)
      if (keys.length === 0) {
        log('provider %s holds %d entries here, its bound: refusing %d more', peerId.toString('hex').slice(-8), this.countOf(peer), offered.length)
        return 0
      }
      const batch = this.root.batch()
      const numbered = known == null
      if (numbered) {
        const key = Buffer.allocUnsafe(PEER_NUMBER_LENGTH)
        key.writeUInt32BE(peer, 0)
        batch.put(key, Buffer.from(peerId), { sublevel: this.numbers })
      }
      // every entry of the call has the same value
      const value = Buffer.allocUnsafe(EXPIRY_LENGTH)
      value.writeDoubleBE(expires, 0)
      for (const key of entryKeys(this.entryPrefix, keys.length, i => keys[i], () => peer)) batch.put(key, value, RAW)
      if (addrs != null) {
        const peerValue = Buffer.from(dagCbor.encode({ addrs: addrs.slice(0, MAX_ADDRS_PER_PEER), expires }))
        batch.put(peerId, peerValue, { sublevel: this.peers })
      }
      try {
        // one atomic batch across the sublevels
        await batch.write()
      } catch (err: any) {
        throw new RecordStoreError(`writing provider records failed: ${err.message}`, { cause: err })
      }
      if (numbered) {
        this.peerIds[peer] = Buffer.from(peerId)
        this.peerNumbers.set(peerId.toString('latin1'), peer)
      }
      // after the commit, into the filter a scan may be filling too (see scan)
      for (const h of [this.held, this.building]) {
        if (h == null) continue
        h.peers.add(peer)
        bump(h.counts, peer, fresh)
        for (const key of keys) h.filter.add(key, 0, peer)
      }
      if (this.held == null) bump(this.unloadedCounts, peer, fresh)
      if (this.sweeping != null) this.sweeping.set(peer, (this.sweeping.get(peer) ?? 0) + fresh)
      if (this.held?.filter.full === true && this.loading == null) {
        this.load().catch(err => { log.error('reloading the provider key filter failed - %e', err) })
      }
      return keys.length
    })
  }

  /** Entries `peer` holds as far as the store knows (exact after a load or a sweep; refreshes never count). */
  private countOf (peer: number): number {
    return (this.held?.counts ?? this.unloadedCounts).get(peer) ?? 0
  }

  /**
   * The keys of an ADD that may be written: every key the filter says `peer` holds (a refresh,
   * or a false positive: ~1%), and new keys up to its bound. `fresh`: how many are new.
   */
  private withinBound (peer: number, keys: Uint8Array[]): { keys: Uint8Array[], fresh: number } {
    const held = this.held
    let room = this.maxRecordsPerPeer - this.countOf(peer)
    if (room >= keys.length) {
      const fresh = held == null ? keys.length : keys.reduce((n, key) => n + (held.filter.has(key, 0, peer) ? 0 : 1), 0)
      return { keys, fresh }
    }
    const out: Uint8Array[] = []
    let fresh = 0
    for (const key of keys) {
      if (held?.filter.has(key, 0, peer) === true) {
        out.push(key)
      } else if (room > 0) {
        out.push(key)
        room--
        fresh++
      }
    }
    return { keys: out, fresh }
  }

  /**
   * Live providers (peer id bytes) of each 16-byte record key, in order, the
   * `maxProvidersPerKey` (at most MAX_PROVIDERS_PER_KEY_RESPONSE) that expire last; one
   * getMany for the call.
   */
  async get (keys: Uint8Array[], options?: AbortOptions): Promise<Uint8Array[][]> {
    if (keys.length === 0) return []
    checkWidth(keys)
    options?.signal?.throwIfAborted()
    await this.readNumbers()
    const held = this.held
    const candidates = held?.peers ?? this.peerIds.keys()
    const peers = [...candidates].filter(n => this.peerIds[n] != null)
    // the pairs that may be held, as (key index, peer)
    const askKey: number[] = []
    const askPeer: number[] = []
    for (let i = 0; i < keys.length; i++) {
      for (const peer of peers) {
        if (held == null || held.filter.has(keys[i], 0, peer)) {
          askKey.push(i)
          askPeer.push(peer)
        }
      }
    }
    const out: Uint8Array[][] = new Array(keys.length)
    for (let i = 0; i < out.length; i++) out[i] = []
    if (askKey.length === 0) return out
    const dbKeys = entryKeys(this.entryPrefix, askKey.length, q => keys[askKey[q]], q => askPeer[q])
    let values: Array<Buffer | undefined>
    try {
      values = await this.root.getMany(dbKeys, RAW)
    } catch (err: any) {
      throw new RecordStoreError(`reading provider records failed: ${err.message}`, { cause: err })
    }
    const now = this.now()
    const cap = Math.min(this.maxProvidersPerKey, MAX_PROVIDERS_PER_KEY_RESPONSE)
    // pairs of one key are adjacent in askKey: [start, end)
    for (let start = 0, end = 0; start < askKey.length; start = end) {
      const i = askKey[start]
      let live = 0
      for (end = start; end < askKey.length && askKey[end] === i; end++) {
        if (readExpiry(values[end]) > now) live++
      }
      if (live <= cap) {
        for (let q = start; q < end; q++) if (readExpiry(values[q]) > now) out[i].push(this.peerIds[askPeer[q]])
        continue
      }
      // more live providers than the cap: the ones that expire last
      const qs: number[] = []
      for (let q = start; q < end; q++) if (readExpiry(values[q]) > now) qs.push(q)
      qs.sort((x, y) => readExpiry(values[y]) - readExpiry(values[x]))
      out[i] = qs.slice(0, cap).map(q => this.peerIds[askPeer[q]])
    }
    return out
  }

  /** Remembered multiaddrs (bytes) of each peer, `[]` when unknown or expired. */
  async getAddrs (peers: Uint8Array[], options?: AbortOptions): Promise<Uint8Array[][]> {
    if (peers.length === 0) return []
    options?.signal?.throwIfAborted()
    let values: Array<Buffer | undefined>
    try {
      values = await this.peers.getMany(peers.map(asBuffer))
    } catch (err: any) {
      throw new RecordStoreError(`reading provider peers failed: ${err.message}`, { cause: err })
    }
    const now = this.now()
    return values.map(v => {
      if (v == null) return []
      try {
        const { addrs, expires } = dagCbor.decode<{ addrs: Uint8Array[], expires: number }>(v)
        return expires > now && Array.isArray(addrs) ? addrs : []
      } catch {
        return []
      }
    })
  }

  /**
   * Delete expired entries, entries above `maxProvidersPerKey` for their key (the soonest to
   * expire first) and expired peers. Walks the store in chunks (bounded memory); returns how
   * many entries were deleted.
   */
  async sweep (options?: AbortOptions): Promise<number> {
    const now = this.now()
    let deleted = 0
    // peers with a live entry left and how many, plus what an ADD records meanwhile (see add)
    const seen = new Map<number, number>()
    this.sweeping = seen
    /** Delete `doomed` (key, expiry seen) unless an ADD has refreshed it since. */
    const drop = async (doomed: Array<[Buffer, number]>): Promise<void> => {
      if (doomed.length === 0) return
      deleted += await this.locked(async () => {
        const values = await this.entries.getMany(doomed.map(([key]) => key))
        const ops = doomed.filter(([, expires], i) => values[i] == null || readExpiry(values[i]) === expires)
          .map(([key]) => ({ type: 'del' as const, key }))
        if (ops.length > 0) await this.entries.batch(ops)
        return ops.length
      })
    }
    try {
      // the entries of a key are adjacent: a key's group is judged once it is complete
      let group: Array<[Buffer, number]> = []
      let doomed: Array<[Buffer, number]> = []
      const close = (): void => {
        const live = group.filter(([, expires]) => expires > now)
        for (const entry of group) if (!(entry[1] > now)) doomed.push(entry)
        if (live.length > this.maxProvidersPerKey) {
          live.sort((a, b) => b[1] - a[1])
          doomed.push(...live.splice(this.maxProvidersPerKey))
        }
        for (const [key] of live) bump(seen, entryPeer(key), 1)
        group = []
      }
      for await (const chunk of chunks(this.entries, options)) {
        for (const [key, value] of chunk) {
          if (group.length > 0 && Buffer.compare(group[0][0].subarray(0, KEY_LENGTH), key.subarray(0, KEY_LENGTH)) !== 0) close()
          group.push([key, readExpiry(value)])
        }
        if (doomed.length >= SWEEP_CHUNK) {
          await drop(doomed)
          doomed = []
        }
      }
      close()
      await drop(doomed)
      await this.sweepPeers(now, options)
    } catch (err: any) {
      if (err.name === 'AbortError') throw err
      throw new RecordStoreError(`sweeping provider records failed: ${err.message}`, { cause: err })
    } finally {
      this.sweeping = undefined
    }
    if (this.held != null) {
      this.held.peers = new Set(seen.keys())
      this.held.counts = seen
    }
    if (deleted > 0) log('swept %d provider entries', deleted)
    // deleted pairs stay in the filter (a read each, never a wrong answer) until it is rebuilt
    if (this.held != null && deleted > this.held.filter.count / 4) await this.load(options)
    return deleted
  }

  private async sweepPeers (now: number, options?: AbortOptions): Promise<void> {
    const expired = (value: Uint8Array): boolean => {
      try { return !(dagCbor.decode<{ expires: number }>(value).expires > now) } catch { return true }
    }
    for await (const chunk of chunks(this.peers, options)) {
      const keys = chunk.filter(([, value]) => expired(value)).map(([key]) => key)
      if (keys.length === 0) continue
      // re-read under the write lock so a concurrent ADD's addresses are never deleted
      await this.locked(async () => {
        const values = await this.peers.getMany(keys)
        const ops = keys.filter((_, i) => values[i] == null || expired(values[i]!)).map(key => ({ type: 'del' as const, key }))
        if (ops.length > 0) await this.peers.batch(ops)
      })
    }
  }

  /** Number of keys with at least one live provider (walks the store: tests and tools). */
  async size (options?: AbortOptions): Promise<number> {
    const now = this.now()
    let n = 0
    let last: Buffer | undefined
    for await (const [key, value] of this.entries.iterator()) {
      options?.signal?.throwIfAborted()
      if (!(readExpiry(value) > now)) continue
      const k = key.subarray(0, KEY_LENGTH)
      if (last == null || Buffer.compare(last, k) !== 0) n++
      last = k
    }
    return n
  }
}
