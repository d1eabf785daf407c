/**
 * Wire format of `/memfabric/providers/2.0.0`: length-prefixed frames, each one dag-cbor map.
 *
 * Requests (client → replica), answered in order, several in flight per stream:
 * - `{ type: 'add', keys, ttl?, addrs? }` — the sender provides every key. `keys` is ONE byte
 *   string of n × 16-byte record keys, each the first 16 bytes of a page's sha2-256 digest
 *   (`recordKey` in keyspace.ts; packed: no per-key framing to encode or decode). `addrs` are
 *   the sender's multiaddrs (sent once per stream is enough). The provider is always the
 *   authenticated remote peer, never a field of the message.
 * - `{ type: 'get', keys }` — which providers does the replica know for each key (same packing).
 *
 * Answers:
 * - `{ type: 'added', count }`
 * - `{ type: 'providers', peers, addrs, providers }` — `peers` is a table of peer ids
 *   (multihash bytes) with `addrs[i]` their multiaddrs; `providers[j]` lists indexes into
 *   `peers` for key j (by position: the asker maps them back to its CIDs), so a peer that
 *   provides many keys costs one small int per key.
 *
 * 1.0.0 carried whole 32-byte digests in the same fields. The protocol id changed with the
 * width, so peers of the two versions never share a stream (a 1.0.0 frame would otherwise
 * parse as twice as many 16-byte keys).
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { Uint8ArrayList } from 'uint8arraylist'
import { InvalidMessageError } from './errors.ts'
import {
  KEY_LENGTH, MAX_KEYS_PER_MESSAGE, MAX_ADDRS_PER_PEER, MAX_ADDR_LENGTH, MAX_PEER_ID_LENGTH,
  MAX_PROVIDERS_PER_KEY_RESPONSE, MAX_RECORD_TTL
} from './constants.ts'
import { bytesKey } from './utils.ts'

export interface AddRequest {
  readonly type: 'add'
  /** n × KEY_LENGTH (16) bytes. */
  readonly keys: Uint8Array
  /** Requested record lifetime in ms; the replica caps it. */
  readonly ttl?: number
  readonly addrs?: Uint8Array[]
}

export interface GetRequest {
  readonly type: 'get'
  /** n × KEY_LENGTH (16) bytes. */
  readonly keys: Uint8Array
}

export type Request = AddRequest | GetRequest

export interface AddResponse {
  readonly type: 'added'
  readonly count: number
}

export interface ProvidersResponse {
  readonly type: 'providers'
  readonly peers: Uint8Array[]
  readonly addrs: Uint8Array[][]
  readonly providers: number[][]
}

export type Response = AddResponse | ProvidersResponse

function toBytes (data: Uint8Array | Uint8ArrayList): Uint8Array {
  return data instanceof Uint8Array ? data : data.subarray()
}

function decodeMap (data: Uint8Array | Uint8ArrayList): Record<string, unknown> {
  let value: unknown
  try {
    value = dagCbor.decode(toBytes(data))
  } catch (err: any) {
    throw new InvalidMessageError(`frame is not dag-cbor: ${err.message}`)
  }
  if (value == null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) {
    throw new InvalidMessageError('frame is not a map')
  }
  return value as Record<string, unknown>
}

function checkKeys (keys: unknown): Uint8Array {
  if (!(keys instanceof Uint8Array)) throw new InvalidMessageError('keys must be bytes')
  if (keys.byteLength === 0 || keys.byteLength % KEY_LENGTH !== 0) {
    throw new InvalidMessageError(`keys must be a non-empty multiple of ${KEY_LENGTH} bytes`)
  }
  if (keys.byteLength / KEY_LENGTH > MAX_KEYS_PER_MESSAGE) {
    throw new InvalidMessageError(`more than ${MAX_KEYS_PER_MESSAGE} keys in one frame`)
  }
  return keys
}

function checkAddrs (addrs: unknown): Uint8Array[] {
  if (!Array.isArray(addrs)) throw new InvalidMessageError('addrs must be a list')
  if (addrs.length > MAX_ADDRS_PER_PEER) throw new InvalidMessageError('too many addrs')
  for (const a of addrs) {
    if (!(a instanceof Uint8Array) || a.byteLength === 0 || a.byteLength > MAX_ADDR_LENGTH) {
      throw new InvalidMessageError('bad addr')
    }
  }
  return addrs
}

function isCount (n: unknown, max: number): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max
}

/** Decode and validate a request frame. Throws InvalidMessageError. */
export function decodeRequest (data: Uint8Array | Uint8ArrayList): Request {
  const m = decodeMap(data)
  if (m.type === 'get') {
    return { type: 'get', keys: checkKeys(m.keys) }
  }
  if (m.type === 'add') {
    const keys = checkKeys(m.keys)
    let ttl: number | undefined
    if (m.ttl !== undefined) {
      if (!isCount(m.ttl, MAX_RECORD_TTL) || m.ttl === 0) throw new InvalidMessageError('bad ttl')
      ttl = m.ttl
    }
    const addrs = m.addrs === undefined ? undefined : checkAddrs(m.addrs)
    return { type: 'add', keys, ttl, addrs }
  }
  throw new InvalidMessageError('unknown request type')
}

/** Decode and validate an answer frame. Throws InvalidMessageError. */
export function decodeResponse (data: Uint8Array | Uint8ArrayList): Response {
  const m = decodeMap(data)
  if (m.type === 'added') {
    if (!isCount(m.count, MAX_KEYS_PER_MESSAGE)) throw new InvalidMessageError('bad count')
    return { type: 'added', count: m.count }
  }
  if (m.type === 'providers') {
    const { peers, addrs, providers } = m
    if (!Array.isArray(peers) || !Array.isArray(addrs) || !Array.isArray(providers)) {
      throw new InvalidMessageError('providers answer needs peers, addrs and providers lists')
    }
    if (addrs.length !== peers.length) throw new InvalidMessageError('addrs must match peers')
    if (providers.length > MAX_KEYS_PER_MESSAGE) throw new InvalidMessageError('too many keys')
    for (const p of peers) {
      if (!(p instanceof Uint8Array) || p.byteLength === 0 || p.byteLength > MAX_PEER_ID_LENGTH) {
        throw new InvalidMessageError('bad peer id')
      }
    }
    for (const a of addrs) checkAddrs(a)
    for (const list of providers) {
      if (!Array.isArray(list) || list.length > MAX_PROVIDERS_PER_KEY_RESPONSE) {
        throw new InvalidMessageError('bad provider list')
      }
      for (const i of list) {
        if (!isCount(i, peers.length - 1)) throw new InvalidMessageError('provider index out of range')
      }
    }
    return { type: 'providers', peers, addrs, providers }
  }
  throw new InvalidMessageError('unknown answer type')
}

/** Encode a request or an answer (no validation: we only encode what we built). */
export function encodeMessage (message: Request | Response): Uint8Array {
  const plain: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(message)) {
    if (v !== undefined) plain[k] = v
  }
  return dagCbor.encode(plain)
}

/** Split packed keys into 16-byte Buffer views (no copy; level takes Buffers as they are). */
export function unpackKeys (keys: Uint8Array): Buffer[] {
  const all = Buffer.from(keys.buffer, keys.byteOffset, keys.byteLength)
  const out: Buffer[] = new Array(keys.byteLength / KEY_LENGTH)
  for (let i = 0; i < out.length; i++) {
    out[i] = all.subarray(i * KEY_LENGTH, (i + 1) * KEY_LENGTH)
  }
  return out
}

/** Pack 16-byte record keys into one byte string; a key of another width is a bug (RangeError). */
export function packKeys (keys: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(keys.length * KEY_LENGTH)
  for (let i = 0; i < keys.length; i++) {
    if (keys[i].byteLength !== KEY_LENGTH) throw new RangeError(`a record key is ${KEY_LENGTH} bytes, got ${keys[i].byteLength}`)
    out.set(keys[i], i * KEY_LENGTH)
  }
  return out
}

/**
 * The `peers` table and `providers` index lists of a providers answer, from each key's list of
 * provider peer ids: a peer listed under many keys is in the table once.
 */
export function indexProviders (lists: Uint8Array[][]): { peers: Uint8Array[], providers: number[][] } {
  const peers: Uint8Array[] = []
  const index = new Map<string, number>()
  const providers = lists.map(list => list.map(p => {
    const k = bytesKey(p)
    let i = index.get(k)
    if (i == null) { index.set(k, i = peers.length); peers.push(p) }
    return i
  }))
  return { peers, providers }
}
