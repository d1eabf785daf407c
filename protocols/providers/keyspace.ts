/**
 * Kad keyspace arithmetic. A CID's position is sha256 of its multihash bytes and a peer's is
 * sha256 of its peer id multihash — the derivation kad-dht uses — so our records live on
 * the peers the DHT itself would pick. Placement uses the whole CID (publisher and resolver
 * both have it); only the record key sent to and stored by replicas is shortened (`recordKey`).
 */
import { hash } from 'node:crypto'
import type { CID } from 'multiformats/cid'
import type { PeerId } from '@libp2p/interface'
import { UnsupportedCidError } from './errors.ts'
import { DIGEST_LENGTH, KEY_LENGTH } from './constants.ts'

const SHA2_256 = 0x12

/** Kad position of arbitrary key bytes. */
export function kadKeyOf (bytes: Uint8Array): Uint8Array {
  return hash('sha256', bytes, 'buffer')
}

/** Kad position of a page CID; throws UnsupportedCidError unless the hash is sha2-256. */
export function cidKadKey (cid: CID): Uint8Array {
  checkCid(cid)
  return kadKeyOf(cid.multihash.bytes)
}

/**
 * The record key of a page: the first KEY_LENGTH (16) bytes of its sha2-256 digest, a view (no
 * copy). Half the bytes of the whole digest on the wire and in replicas' stores. Pages whose
 * digests share these 128 bits would share records; that is harmless — a listed provider that
 * lacks the page answers "missing" on the page protocol, the puller re-plans, and every page is
 * verified against its full CID — and it cannot be forced against a chosen page: that takes a
 * second preimage of sha2-256 cut to 128 bits (~2^128 hashes). A birthday pair (~2^64 hashes)
 * only mixes the records of two pages the attacker made itself; by chance, 10^9 distinct pages
 * collide with probability ~10^-21.
 */
export function recordKey (digest: Uint8Array): Uint8Array {
  return digest.subarray(0, KEY_LENGTH)
}

export function checkCid (cid: CID): void {
  if (cid.multihash.code !== SHA2_256 || cid.multihash.digest.byteLength !== DIGEST_LENGTH) {
    throw new UnsupportedCidError(`only sha2-256 CIDs can be published, got ${cid.toString()}`)
  }
}

export function peerKadKey (peerId: PeerId): Uint8Array {
  return kadKeyOf(peerId.toMultihash().bytes)
}

/** Byte order compare, which is also the order of positions in the keyspace. */
export function compareKeys (a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b)
}

/** Compare the XOR distances of `a` and `b` from `target`: < 0 when `a` is closer. */
export function compareDistance (target: Uint8Array, a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < target.length; i++) {
    const da = a[i] ^ target[i]
    const db = b[i] ^ target[i]
    if (da !== db) return da - db
  }
  return 0
}

/** Number of leading bits `a` and `b` share. */
export function commonPrefixLength (a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ^ b[i]
    if (x !== 0) return i * 8 + Math.clz32(x) - 24
  }
  return a.length * 8
}

/** Whether `key` starts with the first `bits` bits of `prefix`. */
export function hasPrefix (key: Uint8Array, prefix: Uint8Array, bits: number): boolean {
  return commonPrefixLength(key, prefix) >= bits
}

/** The `n` items whose `kadId` is closest to `target`, closest first. */
export function closest<T extends { kadId: Uint8Array }> (target: Uint8Array, items: readonly T[], n: number): T[] {
  // n and items are small (replication of ~20 candidates): insertion keeps it allocation-light
  const out: T[] = []
  for (const item of items) {
    let i = out.length
    while (i > 0 && compareDistance(target, item.kadId, out[i - 1].kadId) < 0) i--
    if (i < n) {
      out.splice(i, 0, item)
      if (out.length > n) out.pop()
    }
  }
  return out
}
