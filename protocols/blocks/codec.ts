/**
 * Wire format of `/memfabric/blocks/1.0.0`, every frame length-prefixed (unsigned varint).
 *
 * Request: dag-cbor `{ cids: [CID…], zstd?: true }`. Response: one answer per CID, in order,
 * each dag-cbor `{ b: bytes }` (the block) or `{}` (not held). With `zstd` the server may also
 * send a group frame `{ z: bytes }`: a zstd frame of consecutive answers, each still
 * prefixed by its length (u32, big-endian); blocks of one manifest share most of their bytes (CID prefixes,
 * repeated pages), so a group compresses far better than blocks one by one.
 */
import { zstdCompressSync, zstdDecompressSync, constants as zlibConstants } from 'node:zlib'
import * as cbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { Uint8ArrayList } from 'uint8arraylist'
import { MAX_BLOCK_SIZE, MAX_CIDS_PER_REQUEST, MAX_FRAME_SIZE, MAX_GROUP_BYTES } from './constants.ts'
import { InvalidBlockMessageError } from './errors.ts'

export interface BlockRequest {
  cids: CID[]
  /** The client takes answers grouped and zstd-compressed (across sites). */
  zstd?: boolean
}

/** One answer per requested CID, in order; `bytes` absent when not held. */
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
  return cbor.encode(request.zstd === true ? { cids: request.cids, zstd: true } : { cids: request.cids })
}

export function decodeRequest (data: Uint8Array | Uint8ArrayList): BlockRequest {
  const value = decode(data) as { cids?: unknown, zstd?: unknown }
  if (!Array.isArray(value?.cids) || value.cids.length === 0 || value.cids.length > MAX_CIDS_PER_REQUEST ||
    !value.cids.every(c => CID.asCID(c) != null)) {
    throw new InvalidBlockMessageError(`request must list 1-${MAX_CIDS_PER_REQUEST} CIDs`)
  }
  if (value.zstd !== undefined && value.zstd !== true) {
    throw new InvalidBlockMessageError('request zstd must be true or absent')
  }
  return value.zstd === true ? { cids: value.cids as CID[], zstd: true } : { cids: value.cids as CID[] }
}

/**
 * Answer frames for a `zstd` request: consecutive answers of up to MAX_GROUP_BYTES grouped into
 * one compressed frame, or left as they are where compressing does not make them smaller.
 */
export async function groupResponses (answers: Uint8Array[], level: number): Promise<Uint8Array[]> {
  const frames: Uint8Array[] = []
  let group: Uint8Array[] = []
  let bytes = 0
  const flush = async (): Promise<void> => {
    if (group.length === 0) return
    const plain = new Uint8ArrayList()
    for (const answer of group) {
      const length = Buffer.allocUnsafe(4)
      length.writeUInt32BE(answer.byteLength)
      plain.append(length, answer)
    }
    const z = zstdCompressSync(plain.subarray(), { params: { [zlibConstants.ZSTD_c_compressionLevel]: level } })
    const frame = cbor.encode({ z })
    if (frame.byteLength < plain.byteLength && frame.byteLength <= MAX_FRAME_SIZE) frames.push(frame)
    else frames.push(...group)
    group = []
    bytes = 0
  }
  for (const answer of answers) {
    if (group.length > 0 && bytes + answer.byteLength > MAX_GROUP_BYTES) await flush()
    group.push(answer)
    bytes += answer.byteLength + 4
  }
  await flush()
  return frames
}

export function encodeResponse (response: BlockResponse): Uint8Array {
  return cbor.encode(response.bytes == null ? {} : { b: response.bytes })
}

/**
 * The answers in one response frame: one, or for a group frame (only valid when the request
 * said `zstd`) those inside it, at most `max` of them.
 */
export function decodeResponses (data: Uint8Array | Uint8ArrayList, grouped: boolean, max: number): BlockResponse[] {
  const value = decode(data) as { z?: unknown } | null
  if (value == null || typeof value !== 'object' || value.z === undefined) {
    return [decodeResponse(data)]
  }
  if (!grouped || !(value.z instanceof Uint8Array)) {
    throw new InvalidBlockMessageError('unexpected group frame')
  }
  let plain: Uint8Array
  try {
    // a group holds at most MAX_GROUP_BYTES of answers, or a single answer of one frame
    plain = zstdDecompressSync(value.z, { maxOutputLength: MAX_GROUP_BYTES + MAX_FRAME_SIZE + 16 })
  } catch (err: any) {
    throw new InvalidBlockMessageError(`group frame does not decompress within its cap: ${err.message}`)
  }
  const out: BlockResponse[] = []
  let pos = 0
  while (pos < plain.byteLength) {
    if (out.length === max) throw new InvalidBlockMessageError('group frame holds more answers than were asked')
    if (pos + 4 > plain.byteLength) throw new InvalidBlockMessageError('group frame truncated')
    const length = new DataView(plain.buffer, plain.byteOffset + pos, 4).getUint32(0)
    pos += 4
    if (length > MAX_FRAME_SIZE || pos + length > plain.byteLength) throw new InvalidBlockMessageError('group frame truncated')
    out.push(decodeResponse(plain.subarray(pos, pos + length)))
    pos += length
  }
  if (out.length === 0) throw new InvalidBlockMessageError('empty group frame')
  return out
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
