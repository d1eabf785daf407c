/**
 * Page naming: a page is named by a CIDv1 with the raw codec and a sha2-256 multihash.
 * The all-zero page is implicit: it is never stored, announced or sent.
 */
import { hash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { PAGE_SIZE } from './constants.ts'

export const RAW_CODE = raw.code
export const SHA256_CODE = sha256.code

const ZERO_PAGE = new Uint8Array(PAGE_SIZE)

/** SHA-256 of `bytes` as a 32-byte digest. */
export function sha256Digest (bytes: Uint8Array): Uint8Array {
  return hash('sha256', bytes, 'buffer')
}

/** CID of a 32-byte sha2-256 digest of raw content. */
export function digestToCid (digest: Uint8Array): CID {
  return CID.createV1(RAW_CODE, Digest.create(SHA256_CODE, digest))
}

/** CID of page content. */
export function pageCid (bytes: Uint8Array): CID {
  return digestToCid(sha256Digest(bytes))
}

/** True if every byte of `bytes` is zero (any length up to a page). */
export function isZeroPage (bytes: Uint8Array): boolean {
  if (bytes.byteLength === PAGE_SIZE) {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).equals(ZERO_PAGE)
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).equals(ZERO_PAGE.subarray(0, bytes.byteLength))
}

/** True if `bytes` hash to `cid` (raw codec, sha2-256 only). */
export function verifyPage (cid: CID, bytes: Uint8Array): boolean {
  if (cid.code !== RAW_CODE || cid.multihash.code !== SHA256_CODE) {
    return false
  }
  return Buffer.from(sha256Digest(bytes)).equals(cid.multihash.digest)
}

/** True if `cid` can name a page (CIDv1, raw codec, sha2-256). */
export function isPageCid (cid: CID): boolean {
  return cid.version === 1 && cid.code === RAW_CODE && cid.multihash.code === SHA256_CODE && cid.multihash.digest.byteLength === 32
}

/** True if `bytes` hash to `cid`'s sha2-256 multihash, whatever its codec (manifest blocks). */
export function verifyBlock (cid: CID, bytes: Uint8Array): boolean {
  if (cid.multihash.code !== SHA256_CODE) {
    return false
  }
  return Buffer.from(sha256Digest(bytes)).equals(cid.multihash.digest)
}

const ZERO_DIGEST = sha256Digest(ZERO_PAGE)

/** True if `digest` is the digest of the all-zero page (a page that is never stored). */
export function isZeroDigest (digest: Uint8Array): boolean {
  return Buffer.from(digest).equals(ZERO_DIGEST)
}

/** Map key of a digest: a 32-char latin1 string. */
export function digestKey (digest: Uint8Array): string {
  if (Buffer.isBuffer(digest)) return digest.toString('latin1')
  return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('latin1')
}
