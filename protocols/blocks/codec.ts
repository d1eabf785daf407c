import * as cbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import type { Uint8ArrayList } from 'uint8arraylist'
import { MAX_BLOCK_SIZE, MAX_CIDS_PER_REQUEST } from './constants.ts'
import { InvalidBlockMessageError } from './errors.ts'

export interface BlockRequest {
  cids: CID[]
}

/** One answer frame per requested CID, in order; `bytes` absent when not held. */
export interface BlockResponse {
  bytes?: Uint8Array
}

function decode (data: Uint8Array | Uint8ArrayList): unknown {
  try {
    return cbor.decode(data instanceof Uint8Array ? data : data.subarray())
  } catch (err: any) {
    throw new InvalidBlockMessageError(`undecodable frame: ${err.message}`)
  }
}

export function encodeRequest (request: BlockRequest): Uint8Array {
  return cbor.encode({ cids: request.cids })
}

export function decodeRequest (data: Uint8Array | Uint8ArrayList): BlockRequest {
  const value = decode(data) as { cids?: unknown }
  if (!Array.isArray(value?.cids) || value.cids.length === 0 || value.cids.length > MAX_CIDS_PER_REQUEST ||
    !value.cids.every(c => CID.asCID(c) != null)) {
    throw new InvalidBlockMessageError(`request must list 1-${MAX_CIDS_PER_REQUEST} CIDs`)
  }
  return { cids: value.cids as CID[] }
}

export function encodeResponse (response: BlockResponse): Uint8Array {
  return cbor.encode(response.bytes == null ? {} : { b: response.bytes })
}

export function decodeResponse (data: Uint8Array | Uint8ArrayList): BlockResponse {
  const value = decode(data) as { b?: unknown } | null
  if (value == null || typeof value !== 'object') {
    throw new InvalidBlockMessageError('response must be a map')
  }
  if (value.b === undefined) return {}
  if (!(value.b instanceof Uint8Array) || value.b.byteLength > MAX_BLOCK_SIZE) {
    throw new InvalidBlockMessageError('response block must be bytes within the size cap')
  }
  return { bytes: value.b }
}
