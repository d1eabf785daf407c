/**
 * What goes over the wire of `/memfabric/presence/1.0.0`: length-prefixed dag-cbor frames.
 *
 * Request (client → server): `{ id: uint32, cids: [CID link…] (1…maxCids) }`
 * Response (server → client): `{ id: uint32, count: uint, bitmap: bytes }` where bit i
 * (byte i >> 3, bit i & 7, least significant first) says whether cids[i] is held;
 * `bitmap` is exactly ceil(count / 8) bytes and the padding bits are zero.
 */
import { encode as cborEncode, decode as cborDecode } from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import type { Uint8ArrayList } from 'uint8arraylist'
import { isPageCid } from '../../store/page.ts'
import { InvalidMessageError } from './errors.ts'
import { DEFAULT_MAX_CIDS_PER_QUERY } from './constants.ts'

export interface PresenceRequest {
  id: number
  cids: CID[]
}

export interface PresenceResponse {
  id: number
  count: number
  bitmap: Uint8Array
}

const MAX_U32 = 0xffffffff

function isU32 (n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_U32
}

function decodeMap (data: Uint8Array | Uint8ArrayList, what: string, fields: string[]): Record<string, unknown> {
  let msg: unknown
  try {
    msg = cborDecode(data instanceof Uint8Array ? data : data.subarray())
  } catch (err: any) {
    throw new InvalidMessageError(`${what} is not dag-cbor: ${err?.message}`, { cause: err })
  }
  if (msg == null || typeof msg !== 'object' || Array.isArray(msg) || msg instanceof Uint8Array || CID.asCID(msg) != null) {
    throw new InvalidMessageError(`${what} is not a map`)
  }
  const m = msg as Record<string, unknown>
  for (const key of Object.keys(m)) {
    if (!fields.includes(key)) {
      throw new InvalidMessageError(`${what} has unknown field ${JSON.stringify(key.slice(0, 32))}`)
    }
  }
  if (!isU32(m.id)) {
    throw new InvalidMessageError(`${what} id is not a uint32`)
  }
  return m
}

export function encodeRequest (req: PresenceRequest): Uint8Array {
  return cborEncode({ id: req.id, cids: req.cids })
}

/** Decode and validate a request frame. Throws InvalidMessageError. */
export function decodeRequest (data: Uint8Array | Uint8ArrayList, maxCids = DEFAULT_MAX_CIDS_PER_QUERY): PresenceRequest {
  const m = decodeMap(data, 'presence request', ['id', 'cids'])
  if (!Array.isArray(m.cids) || m.cids.length === 0 || m.cids.length > maxCids) {
    throw new InvalidMessageError(`presence request cids must be an array of 1…${maxCids}`)
  }
  const cids: CID[] = []
  for (const c of m.cids) {
    const cid = CID.asCID(c)
    if (cid == null || !isPageCid(cid)) {
      throw new InvalidMessageError('presence request holds a CID that cannot name a page')
    }
    cids.push(cid)
  }
  return { id: m.id as number, cids }
}

/** Pack booleans into a bitmap, least significant bit first. */
export function toBitmap (held: boolean[]): Uint8Array {
  const bitmap = new Uint8Array(Math.ceil(held.length / 8))
  for (let i = 0; i < held.length; i++) {
    if (held[i]) {
      bitmap[i >> 3] |= 1 << (i & 7)
    }
  }
  return bitmap
}

export function fromBitmap (bitmap: Uint8Array, count: number): boolean[] {
  const out = new Array<boolean>(count)
  for (let i = 0; i < count; i++) {
    out[i] = (bitmap[i >> 3] & (1 << (i & 7))) !== 0
  }
  return out
}

export function encodeResponse (id: number, held: boolean[]): Uint8Array {
  return cborEncode({ id, count: held.length, bitmap: toBitmap(held) })
}

/** Decode and validate a response frame. Throws InvalidMessageError. */
export function decodeResponse (data: Uint8Array | Uint8ArrayList, maxCids = DEFAULT_MAX_CIDS_PER_QUERY): PresenceResponse {
  const m = decodeMap(data, 'presence response', ['id', 'count', 'bitmap'])
  if (!isU32(m.count) || m.count === 0 || m.count > maxCids) {
    throw new InvalidMessageError(`presence response count must be 1…${maxCids}`)
  }
  if (!(m.bitmap instanceof Uint8Array) || m.bitmap.byteLength !== Math.ceil(m.count / 8)) {
    throw new InvalidMessageError('presence response bitmap has the wrong length')
  }
  const tail = m.count & 7
  if (tail !== 0 && (m.bitmap[m.bitmap.byteLength - 1] >> tail) !== 0) {
    throw new InvalidMessageError('presence response bitmap has padding bits set')
  }
  return { id: m.id as number, count: m.count, bitmap: m.bitmap }
}
