/**
 * Request frames of `/memfabric/pages/1.0.0` (client → server): one dag-cbor map each, its
 * kind named by the field it carries. Length-prefixed (unsigned varint, `lpStream`).
 *
 * Page request (client → server): dag-cbor map
 *   `{ id: uint32, pages: bytes, compress?: 'zstd', refMask?: bytes, refs?: bytes }`
 * `pages` is the sha2-256 digests of the pages asked (32 bytes each, 1…maxCids of them: page
 * CIDs differ only in their digest, so the CID prefix is not repeated). `refs` (only with
 * `compress`) holds the digests of pages the client holds that are probably similar, one for
 * each bit set in `refMask` (bit i, LSB first in byte i/8, = page i has one); the server may
 * send such a page zstd-compressed with its reference page as dictionary.
 *
 * Manifest-patch request: dag-cbor map `{ id: uint32, patch: CID link }` asks how image `patch`
 * differs, slot by slot, from the older image the server would use as its basis, so a client
 * that holds that basis's manifest can rebuild the image's manifest instead of fetching it.
 *
 * Prefix request: `{ id: uint32, prefixes: bytes, compress?: 'zstd', held?: true }` asks for
 * pages by the first PREFIX_BYTES bytes of their digest (1…maxCids of them); the answer is the
 * same page frames, an entry per prefix, missing where the server holds no page with that
 * prefix. The client hashes each page and keeps it only if its digest starts with the prefix
 * asked. With `held: true` the answer is one held frame instead (held-frames.ts): which
 * prefixes the server holds a page for, no pages.
 *
 * Thin-manifest request: `{ id: uint32, thin: CID link }` asks for image `thin`'s slots as
 * zero runs and digest prefixes (see thin-frames.ts): a few bytes a slot instead of the manifest's
 * 36, from which a client that holds or can find most pages rebuilds the manifest blocks.
 */
import { encode as cborEncode, decode as cborDecode } from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import type { Uint8ArrayList } from 'uint8arraylist'
import { digestToCid } from '../../../store/page.ts'
import { InvalidMessageError } from '../errors.ts'
import { DEFAULT_MAX_CIDS_PER_REQUEST, PREFIX_BYTES } from '../constants.ts'
import { DIGEST_BYTES, flat, isU32 } from './frame.ts'

export type Compression = 'zstd'

export interface PageRequest {
  id: number
  cids: CID[]
  compress?: Compression
  /** Per cid, a page the client holds that the server may compress against. */
  refs?: Array<CID | null>
}

export interface PatchRequest {
  id: number
  /** Root of the image whose manifest the client wants to rebuild. */
  patch: CID
}

/** Pages by digest prefix: PREFIX_BYTES bytes each, concatenated. */
export interface PrefixRequest {
  id: number
  prefixes: Uint8Array
  compress?: Compression
  /** Ask only which prefixes are held (a held frame), not for the pages. */
  held?: true
}

export interface ThinRequest {
  id: number
  /** Root of the image whose slots the client wants as prefixes. */
  thin: CID
}

export type AnyRequest = PageRequest | PatchRequest | PrefixRequest | ThinRequest

export function encodeRequest (req: PageRequest): Uint8Array {
  const msg: Record<string, unknown> = { id: req.id, pages: packDigests(req.cids) }
  if (req.compress != null) {
    msg.compress = req.compress
  }
  if (req.refs != null) {
    const mask = new Uint8Array(Math.ceil(req.cids.length / 8))
    const refs: CID[] = []
    req.refs.forEach((ref, i) => {
      if (ref == null) return
      mask[i >> 3] |= 1 << (i & 7)
      refs.push(ref)
    })
    msg.refMask = mask
    msg.refs = packDigests(refs)
  }
  return cborEncode(msg)
}

function packDigests (cids: CID[]): Uint8Array {
  const out = new Uint8Array(cids.length * DIGEST_BYTES)
  cids.forEach((cid, i) => { out.set(cid.multihash.digest, i * DIGEST_BYTES) })
  return out
}

function unpackDigests (bytes: unknown, field: string): CID[] {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength % DIGEST_BYTES !== 0) {
    throw new InvalidMessageError(`request ${field} must be bytes, 32 per page`)
  }
  const cids: CID[] = new Array(bytes.byteLength / DIGEST_BYTES)
  for (let i = 0; i < cids.length; i++) cids[i] = digestToCid(bytes.slice(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES))
  return cids
}

export function encodePatchRequest (req: PatchRequest): Uint8Array {
  return cborEncode({ id: req.id, patch: req.patch })
}

export function encodePrefixRequest (req: PrefixRequest): Uint8Array {
  const msg: Record<string, unknown> = { id: req.id, prefixes: req.prefixes }
  if (req.compress != null) msg.compress = req.compress
  if (req.held === true) msg.held = true
  return cborEncode(msg)
}

export function encodeThinRequest (req: ThinRequest): Uint8Array {
  return cborEncode({ id: req.id, thin: req.thin })
}

/** Decode and validate a page request frame. Throws InvalidMessageError. */
export function decodeRequest (data: Uint8Array | Uint8ArrayList, maxCids = DEFAULT_MAX_CIDS_PER_REQUEST): PageRequest {
  const req = decodeAnyRequest(data, maxCids)
  if (!isPageRequest(req)) {
    throw new InvalidMessageError('expected a page request')
  }
  return req
}

/** Decode and validate a request frame of any kind. Throws InvalidMessageError. */
export function decodeAnyRequest (data: Uint8Array | Uint8ArrayList, maxCids = DEFAULT_MAX_CIDS_PER_REQUEST): AnyRequest {
  let msg: unknown
  try {
    msg = cborDecode(flat(data))
  } catch (err: any) {
    throw new InvalidMessageError(`request is not dag-cbor: ${err?.message}`, { cause: err })
  }
  if (msg == null || typeof msg !== 'object' || Array.isArray(msg) || msg instanceof Uint8Array || CID.asCID(msg) != null) {
    throw new InvalidMessageError('request is not a map')
  }
  const m = msg as Record<string, unknown>
  // the field that names the kind of request: `pages` unless one of the others is present
  const kind = (['patch', 'thin', 'prefixes'] as const).find(k => k in m) ?? 'pages'
  for (const key of Object.keys(m)) {
    if (!REQUEST_FIELDS[kind].includes(key)) {
      throw new InvalidMessageError(`request has unknown field ${JSON.stringify(key.slice(0, 32))}`)
    }
  }
  if (!isU32(m.id)) {
    throw new InvalidMessageError('request id is not a uint32')
  }
  if (m.compress !== undefined && m.compress !== 'zstd') {
    throw new InvalidMessageError('request compress must be "zstd" or absent')
  }
  if (kind === 'patch' || kind === 'thin') {
    const root = CID.asCID(m[kind])
    if (root == null) {
      throw new InvalidMessageError(`request ${kind} is not a CID`)
    }
    return kind === 'patch' ? { id: m.id, patch: root } : { id: m.id, thin: root }
  }
  if (kind === 'prefixes') {
    const prefixes = m.prefixes
    if (!(prefixes instanceof Uint8Array) || prefixes.byteLength === 0 || prefixes.byteLength % PREFIX_BYTES !== 0 || prefixes.byteLength / PREFIX_BYTES > maxCids) {
      throw new InvalidMessageError(`request prefixes must be 1…${maxCids} prefixes of ${PREFIX_BYTES} bytes`)
    }
    if (m.held !== undefined && m.held !== true) {
      throw new InvalidMessageError('request held must be true or absent')
    }
    const req: PrefixRequest = m.compress === 'zstd' ? { id: m.id, prefixes, compress: 'zstd' } : { id: m.id, prefixes }
    if (m.held === true) req.held = true
    return req
  }
  const cids = unpackDigests(m.pages, 'pages')
  if (cids.length === 0 || cids.length > maxCids) {
    throw new InvalidMessageError(`request pages must hold 1…${maxCids} digests`)
  }
  const req: PageRequest = m.compress === 'zstd' ? { id: m.id, cids, compress: 'zstd' } : { id: m.id, cids }
  if (m.refs !== undefined || m.refMask !== undefined) {
    const mask = m.refMask
    if (req.compress == null || !(mask instanceof Uint8Array) || mask.byteLength !== Math.ceil(cids.length / 8)) {
      throw new InvalidMessageError('request refs need compress and a refMask of one bit per page')
    }
    const refs = unpackDigests(m.refs, 'refs')
    let next = 0
    req.refs = cids.map((_, i) => (mask[i >> 3] & (1 << (i & 7))) !== 0 ? refs[next++] ?? null : null)
    if (next !== refs.length) {
      throw new InvalidMessageError('request refMask does not match its refs')
    }
  }
  return req
}

const REQUEST_FIELDS = {
  pages: ['id', 'pages', 'compress', 'refMask', 'refs'],
  patch: ['id', 'patch'],
  thin: ['id', 'thin'],
  prefixes: ['id', 'prefixes', 'compress', 'held']
}

export function isPatchRequest (req: AnyRequest): req is PatchRequest {
  return 'patch' in req
}

export function isPageRequest (req: AnyRequest): req is PageRequest {
  return 'cids' in req
}

export function isPrefixRequest (req: AnyRequest): req is PrefixRequest {
  return 'prefixes' in req
}

export function isThinRequest (req: AnyRequest): req is ThinRequest {
  return 'thin' in req
}
