import type { CID } from 'multiformats/cid'

/** Map key of a CID: its bytes as a binary string (cheaper than base32 `toString()`). */
export function keyOf (cid: CID): string {
  return Buffer.from(cid.bytes.buffer, cid.bytes.byteOffset, cid.bytes.byteLength).toString('latin1')
}
