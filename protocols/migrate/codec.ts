import * as cbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import type { Uint8ArrayList } from 'uint8arraylist'
import { MAX_NAME_LENGTH } from './constants.ts'
import { InvalidMigrateMessageError } from './errors.ts'

/** What the source asks of the destination: pull this image from me. */
export interface Offer {
  root: CID
  name?: string
  /** Where the destination writes the memory file (inside its migration output folder). */
  out?: string
  /** Live migration: round number, and the root of the previous round to release. */
  round?: number
  previous?: CID
}

export type Answer =
  | { progress: unknown }
  | { report: unknown }
  | { error: { code: string, message: string } }

function decode (data: Uint8Array | Uint8ArrayList): any {
  try {
    return cbor.decode(data instanceof Uint8Array ? data : data.subarray())
  } catch (err: any) {
    throw new InvalidMigrateMessageError(`undecodable frame: ${err.message}`)
  }
}

function optionalString (value: unknown, what: string): string | undefined {
  if (value == null) return undefined
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_NAME_LENGTH) {
    throw new InvalidMigrateMessageError(`invalid ${what} in offer`)
  }
  return value
}

export function encodeOffer (offer: Offer): Uint8Array {
  return cbor.encode(Object.fromEntries(Object.entries(offer).filter(([, v]) => v !== undefined)))
}

export function decodeOffer (data: Uint8Array | Uint8ArrayList): Offer {
  const value = decode(data)
  const root = CID.asCID(value?.root)
  if (root == null) throw new InvalidMigrateMessageError('offer without a root CID')
  const previous = value.previous == null ? undefined : CID.asCID(value.previous)
  if (previous === null) throw new InvalidMigrateMessageError('invalid previous root in offer')
  const round = value.round == null ? undefined : value.round
  if (round !== undefined && (!Number.isSafeInteger(round) || round < 0)) throw new InvalidMigrateMessageError('invalid round in offer')
  return { root, name: optionalString(value.name, 'name'), out: optionalString(value.out, 'out path'), round, previous }
}

export function encodeAnswer (answer: Answer): Uint8Array {
  return cbor.encode(JSON.parse(JSON.stringify(answer)))
}

export function decodeAnswer (data: Uint8Array | Uint8ArrayList): Answer {
  const value = decode(data)
  if (value != null && typeof value === 'object') {
    if ('progress' in value) return { progress: value.progress }
    if ('report' in value) return { report: value.report }
    if ('error' in value && typeof value.error?.code === 'string' && typeof value.error?.message === 'string') {
      return { error: { code: value.error.code, message: value.error.message } }
    }
  }
  throw new InvalidMigrateMessageError('answer must hold progress, report or error')
}
