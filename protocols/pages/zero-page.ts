/**
 * The zero page: implicit on both sides, never requested nor sent.
 */
import type { CID } from 'multiformats/cid'
import { PAGE_SIZE } from '../../store/constants.ts'
import { pageCid } from '../../store/page.ts'

export const ZERO_PAGE_CID = pageCid(new Uint8Array(PAGE_SIZE))

const ZERO_DIGEST = ZERO_PAGE_CID.multihash.digest

export function isZeroCid (cid: CID): boolean {
  const d = cid.multihash.digest
  if (d.byteLength !== ZERO_DIGEST.byteLength || d[0] !== ZERO_DIGEST[0]) {
    return false // the common case, decided without allocating
  }
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength).equals(ZERO_DIGEST)
}
