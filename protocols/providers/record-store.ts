/**
 * Provider records held by a replica, in three level sublevels:
 *
 * - `q` (records): `<16-byte record key>` (the first 16 bytes of the page's sha2-256 digest,
 *   `recordKey` in keyspace.ts) → packed list of `[u32 peer number][f64 expiry ms]`
 *   (at most `maxProvidersPerKey` entries, expired ones dropped whenever the key is written).
 *   One key per page makes a GET of a whole frame ONE `getMany`, and an ADD of a frame
 *   ONE `getMany` + ONE `batch`, instead of a range scan per key. A replica holds a record
 *   per page of every image its providers hold: 12 bytes an entry, where the peer id itself
 *   took 39 (LevelDB maps the tables it reads, so their size is the daemon's memory too).
 * - `n` (peer numbers): `<u32 number>` → peer id bytes, every provider ever recorded (a few
 *   bytes each; numbers are never reused), all in memory once read.
 * - `p` (peers): `<peer id bytes>` → dag-cbor `{ addrs, expires }`, one entry per provider peer.
 *
 * Keys are written to the root database already prefixed (one buffer per frame, one chained
 * batch), which is what the sublevel would do key by key. In memory there is only a Bloom
 * filter of the keys held (~1.25 bytes per key, key-filter.ts), loaded by `load()`: with
 * it an ADD of keys nobody provides yet is a blind write, and only keys that may already
 * hold providers are read first. Without it (before `load()`) every key is read.
 *
 * Records of earlier versions (sublevel `r`: peer ids in the values, and in 1.0.0 keys of
 * whole 32-byte digests) are never read; `load()` deletes them (their providers re-announce
 * everything at start).
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { AbstractLevel, AbstractSublevel } from 'abstract-level'
import type { AbortOptions } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { RecordStoreError } from './errors.ts'
import { KeyFilter } from './key-filter.ts'
import { DEFAULT_MAX_PROVIDERS_PER_KEY, KEY_LENGTH, MAX_ADDRS_PER_PEER, MAX_PROVIDERS_PER_KEY_RESPONSE } from './constants.ts'

const log = logger('memfabric:providers:store')

const PEER_NUMBER_LENGTH = 4
const ENTRY_LENGTH = PEER_NUMBER_LENGTH + 8
const SWEEP_CHUNK = 1000
/** Keys per read while loading the filter. */
const LOAD_CHUNK = 4096
/** Raw keys and values on the root database, whatever its default encodings. */
const RAW = { keyEncoding: 'buffer', valueEncoding: 'buffer' } as const

type Db = AbstractLevel<any, any, any>
type Sub = AbstractSublevel<any, any, Buffer, Buffer>

export interface RecordStoreInit {
  /** Root or sublevel of the node's database; two sublevels are made inside it. */
  db: Db
  /** Providers kept per key (default DEFAULT_MAX_PROVIDERS_PER_KEY). */
  maxProvidersPerKey?: number
  /** Clock in ms, for tests (default Date.now). */
  now?: () => number
}

interface Entry {
  /** The provider's number (sublevel `n`). */
  peer: number
  expires: number
}

function decodeEntries (value: Uint8Array): Entry[] {
  const out: Entry[] = []
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
  // a corrupt tail (not a whole entry) is ignored: keep what parsed
  for (let pos = 0; pos + ENTRY_LENGTH <= value.byteLength; pos += ENTRY_LENGTH) {
    out.push({ peer: view.getUint32(pos), expires: view.getFloat64(pos + PEER_NUMBER_LENGTH) })
  }
  return out
}

function encodeEntries (entries: Entry[]): Buffer {
  const out = Buffer.allocUnsafe(entries.length * ENTRY_LENGTH)
  entries.forEach((e, i) => {
    out.writeUInt32BE(e.peer, i * ENTRY_LENGTH)
    out.writeDoubleBE(e.expires, i * ENTRY_LENGTH + PEER_NUMBER_LENGTH)
  })
  return out
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

export class RecordStore {
  private readonly db: Db
  private readonly records: Sub
  private readonly peers: Sub
  private readonly numbers: Sub
  /** Records of earlier versions, deleted by load. */
  private readonly legacy: Sub
  /** Peer id bytes by number, and numbers by peer id (latin1); read once from `numbers`. */
  private readonly peerIds: Uint8Array[] = []
  private readonly peerNumbers = new Map<string, number>()
  private numbersRead?: Promise<void>
  /** The root database and the records sublevel's full prefix on it. */
  private readonly root: Db
  private readonly recordPrefix: Buffer
  private readonly maxProvidersPerKey: number
  private readonly now: () => number
  /** ADDs read-modify-write keys: run them one after another so none loses an update. */
  private writeLock: Promise<unknown> = Promise.resolve()
  /** Keys that may hold records; undefined until loaded (then every key is read). */
  private filter?: KeyFilter
  /** A filter being filled by a scan; ADDs go into it too, so it misses nothing. */
  private building?: KeyFilter
  private loading?: Promise<void>

  constructor (init: RecordStoreInit) {
    this.db = init.db
    this.records = init.db.sublevel('q', { keyEncoding: 'buffer', valueEncoding: 'buffer' }) as unknown as Sub
    this.peers = init.db.sublevel('p', { keyEncoding: 'buffer', valueEncoding: 'buffer' }) as unknown as Sub
    this.numbers = init.db.sublevel('n', { keyEncoding: 'buffer', valueEncoding: 'buffer' }) as unknown as Sub
    this.legacy = init.db.sublevel('r', { keyEncoding: 'buffer', valueEncoding: 'buffer' }) as unknown as Sub
    this.root = (this.records as any).db as Db
    this.recordPrefix = Buffer.from((this.records as any).prefix as string, 'utf8')
    this.maxProvidersPerKey = init.maxProvidersPerKey ?? DEFAULT_MAX_PROVIDERS_PER_KEY
    this.now = init.now ?? Date.now
  }

  /**
   * Load the filter of held keys (a scan of every key; ADDs and GETs work meanwhile, reading
   * every key), after deleting records of earlier versions (sublevel `r`) and of another key
   * width. Called again it rebuilds the filter, e.g. after a sweep deleted many keys.
   */
  async load (options?: AbortOptions): Promise<void> {
    this.loading ??= this.scan(Math.max(this.filter?.count ?? 0, 1) * 2, options).finally(() => { this.loading = undefined })
    await this.loading
  }

  private async scan (capacity: number, options?: AbortOptions): Promise<void> {
    await this.dropLegacy(options)
    while (true) {
      // set before the iterator takes its snapshot: a key committed later is added by its ADD
      const filter = new KeyFilter(capacity)
      this.building = filter
      const it = this.records.keys()
      try {
        while (!filter.full) {
          options?.signal?.throwIfAborted()
          const keys = await it.nextv(LOAD_CHUNK)
          if (keys.length === 0) break
          let stale: Buffer[] | undefined
          for (const key of keys) {
            if (key.byteLength === KEY_LENGTH) filter.add(key)
            else (stale ??= []).push(key)
          }
          // no ADD writes a key of another width, so these deletes race nothing
          if (stale != null) await this.records.batch(stale.map(key => ({ type: 'del' as const, key })))
        }
      } catch (err: any) {
        if (this.building === filter) this.building = undefined
        if (err.name === 'AbortError') throw err
        throw new RecordStoreError(`loading provider records failed: ${err.message}`, { cause: err })
      } finally {
        await it.close()
      }
      if (!filter.full) {
        this.filter = filter
        this.building = undefined
        log('filter of %d provider keys loaded', filter.count)
        return
      }
      capacity = filter.count * 4 // more keys than guessed: start over, bigger
    }
  }

  /** Delete records of earlier versions (sublevel `r`), a chunk at a time. */
  private async dropLegacy (options?: AbortOptions): Promise<void> {
    let dropped = 0
    while (true) {
      options?.signal?.throwIfAborted()
      const keys = await this.legacy.keys({ limit: LOAD_CHUNK }).all()
      if (keys.length === 0) break
      await this.legacy.batch(keys.map(key => ({ type: 'del' as const, key })))
      dropped += keys.length
    }
    if (dropped > 0) log('deleted %d provider records of an earlier version', dropped)
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

  /** Prefixed level keys of record `keys`, all in one buffer. */
  private recordKeys (keys: Uint8Array[]): Buffer[] {
    const p = this.recordPrefix
    const len = p.byteLength + KEY_LENGTH
    const all = Buffer.allocUnsafe(len * keys.length)
    const out: Buffer[] = new Array(keys.length)
    for (let i = 0; i < keys.length; i++) {
      const at = i * len
      all.set(p, at)
      all.set(keys[i], at + p.byteLength)
      out[i] = all.subarray(at, at + len)
    }
    return out
  }

  private async locked<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.writeLock.then(fn, fn)
    this.writeLock = run.catch(() => {})
    return run
  }

  /**
   * Record `provider` for every 16-byte record key until `expires`, and remember its addresses.
   * One getMany and one atomic batch for the whole call. Returns the number of keys written.
   */
  async add (provider: Uint8Array, keys: Uint8Array[], expires: number, addrs?: Uint8Array[], options?: AbortOptions): Promise<number> {
    if (keys.length === 0) return 0
    checkWidth(keys)
    return this.locked(async () => {
      options?.signal?.throwIfAborted()
      await this.readNumbers()
      const dbKeys = this.recordKeys(keys)
      const filter = this.filter
      // only keys that may already hold providers are read
      const known: number[] = []
      for (let i = 0; i < keys.length; i++) {
        if (filter == null || filter.has(keys[i])) known.push(i)
      }
      let existing: Array<Buffer | undefined> = []
      if (known.length > 0) {
        try {
          existing = await this.root.getMany(known.length === dbKeys.length ? dbKeys : known.map(i => dbKeys[i]), RAW)
        } catch (err: any) {
          throw new RecordStoreError(`reading provider records failed: ${err.message}`, { cause: err })
        }
      }
      const now = this.now()
      const peerId = asBuffer(provider)
      const batch = this.root.batch()
      let peer = this.peerNumbers.get(peerId.toString('latin1'))
      const numbered = peer == null
      if (peer == null) {
        peer = this.peerIds.length
        const key = Buffer.allocUnsafe(PEER_NUMBER_LENGTH)
        key.writeUInt32BE(peer, 0)
        batch.put(key, Buffer.from(peerId), { sublevel: this.numbers })
      }
      // every brand-new key gets the same value: build it once
      const fresh = encodeEntries([{ peer, expires }])
      let k = 0
      for (let i = 0; i < dbKeys.length; i++) {
        let value = fresh
        const old = known[k] === i ? existing[k++] : undefined
        if (old != null) {
          const entries = decodeEntries(old).filter(e => e.expires > now && e.peer !== peer)
          entries.push({ peer, expires })
          if (entries.length > this.maxProvidersPerKey) {
            entries.sort((a, b) => b.expires - a.expires)
            entries.length = this.maxProvidersPerKey
          }
          value = encodeEntries(entries)
        }
        batch.put(dbKeys[i], value, RAW)
      }
      if (addrs != null) {
        const peerValue = Buffer.from(dagCbor.encode({ addrs: addrs.slice(0, MAX_ADDRS_PER_PEER), expires }))
        batch.put(peerId, peerValue, { sublevel: this.peers })
      }
      try {
        // one atomic batch across both sublevels
        await batch.write()
      } catch (err: any) {
        throw new RecordStoreError(`writing provider records failed: ${err.message}`, { cause: err })
      }
      if (numbered) {
        this.peerIds[peer] = Buffer.from(peerId)
        this.peerNumbers.set(peerId.toString('latin1'), peer)
      }
      // after the commit, into the filter a scan may be filling too (see scan)
      for (const f of [this.filter, this.building]) {
        if (f == null) continue
        for (const key of keys) f.add(key)
      }
      if (this.filter?.full === true && this.loading == null) {
        this.load().catch(err => { log.error('reloading the provider key filter failed - %e', err) })
      }
      return dbKeys.length
    })
  }

  /** Live providers (peer id bytes) of each 16-byte record key, in order; one getMany for the call. */
  async get (keys: Uint8Array[], options?: AbortOptions): Promise<Uint8Array[][]> {
    if (keys.length === 0) return []
    checkWidth(keys)
    options?.signal?.throwIfAborted()
    await this.readNumbers()
    const filter = this.filter
    const known: number[] = []
    for (let i = 0; i < keys.length; i++) {
      if (filter == null || filter.has(keys[i])) known.push(i)
    }
    const out: Uint8Array[][] = new Array(keys.length)
    for (let i = 0; i < out.length; i++) out[i] = []
    if (known.length === 0) return out
    let values: Array<Buffer | undefined>
    try {
      values = await this.root.getMany(this.recordKeys(known.length === keys.length ? keys : known.map(i => keys[i])), RAW)
    } catch (err: any) {
      throw new RecordStoreError(`reading provider records failed: ${err.message}`, { cause: err })
    }
    const now = this.now()
    for (let k = 0; k < known.length; k++) {
      const v = values[k]
      if (v == null) continue
      const live = out[known[k]]
      for (const e of decodeEntries(v)) {
        const id = this.peerIds[e.peer]
        if (id != null && e.expires > now && live.length < MAX_PROVIDERS_PER_KEY_RESPONSE) live.push(id)
      }
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
   * Delete expired records and peers. Walks the store in chunks (bounded memory); returns
   * how many records were deleted or trimmed.
   */
  async sweep (options?: AbortOptions): Promise<number> {
    const now = this.now()
    let changed = 0
    for (const sub of [this.records, this.peers]) {
      const isPeers = sub === this.peers
      const expired = (value: Uint8Array): boolean => {
        if (isPeers) {
          try { return !(dagCbor.decode<{ expires: number }>(value).expires > now) } catch { return true }
        }
        return decodeEntries(value).some(e => !(e.expires > now))
      }
      const it = sub.iterator()
      try {
        while (true) {
          options?.signal?.throwIfAborted()
          const chunk = await it.nextv(SWEEP_CHUNK)
          if (chunk.length === 0) break
          const keys = chunk.filter(([, value]) => expired(value)).map(([key]) => key)
          if (keys.length === 0) continue
          // re-read under the write lock so a concurrent ADD is never overwritten by a stale trim
          changed += await this.locked(async () => {
            const values = await sub.getMany(keys)
            const ops: any[] = []
            for (let i = 0; i < keys.length; i++) {
              const value = values[i]
              if (value == null || !expired(value)) continue
              if (isPeers) {
                ops.push({ type: 'del', key: keys[i] })
                continue
              }
              const live = decodeEntries(value).filter(e => e.expires > now)
              ops.push(live.length === 0 ? { type: 'del', key: keys[i] } : { type: 'put', key: keys[i], value: encodeEntries(live) })
            }
            if (ops.length > 0) await sub.batch(ops)
            return isPeers ? 0 : ops.length
          })
        }
      } catch (err: any) {
        if (err.name === 'AbortError') throw err
        throw new RecordStoreError(`sweeping provider records failed: ${err.message}`, { cause: err })
      } finally {
        await it.close()
      }
    }
    if (changed > 0) log('swept %d expired records', changed)
    // deleted keys stay in the filter (a read each, never a wrong answer) until it is rebuilt
    if (this.filter != null && changed > this.filter.count / 4) await this.load(options)
    return changed
  }

  /** Number of keys with at least one live provider (walks the store: tests and tools). */
  async size (options?: AbortOptions): Promise<number> {
    const now = this.now()
    let n = 0
    for await (const value of this.records.values()) {
      options?.signal?.throwIfAborted()
      if (decodeEntries(value).some(e => e.expires > now)) n++
    }
    return n
  }
}
