/**
 * The on-disk layout of the record store's entries (record-store.ts says what each sublevel
 * holds): widths, the expiry codec and the level types shared by the store and by the upgrade
 * of earlier layouts (record-store-upgrade.ts).
 */
import type { AbstractLevel, AbstractSublevel } from 'abstract-level'
import { KEY_LENGTH } from './constants.ts'

export type Db = AbstractLevel<any, any, any>
export type Sub = AbstractSublevel<any, any, Buffer, Buffer>

export const PEER_NUMBER_LENGTH = 4
/** An entry's level key after the sublevel prefix: record key, then peer number. */
export const ENTRY_KEY_LENGTH = KEY_LENGTH + PEER_NUMBER_LENGTH
export const EXPIRY_LENGTH = 8
/** Keys per read while loading the filter or converting an earlier layout. */
export const LOAD_CHUNK = 4096

/** A sublevel of raw (Buffer) keys and values. */
export function rawSublevel (db: Db, name: string): Sub {
  return db.sublevel(name, { keyEncoding: 'buffer', valueEncoding: 'buffer' }) as unknown as Sub
}

export function readExpiry (value: Buffer | undefined): number {
  if (value == null || value.byteLength < EXPIRY_LENGTH) return -Infinity // a corrupt entry is an expired one
  return value.readDoubleBE(0)
}

/** The peer number of an entry's level key (without its prefix). */
export function entryPeer (key: Buffer): number {
  return key.readUInt32BE(KEY_LENGTH)
}

/**
 * Level keys of `n` entries (record key and peer number of each) with `prefix` before each,
 * all in one buffer.
 */
export function entryKeys (prefix: Buffer, n: number, keyOf: (i: number) => Uint8Array, peerOf: (i: number) => number): Buffer[] {
  const len = prefix.byteLength + ENTRY_KEY_LENGTH
  const all = Buffer.allocUnsafe(len * n)
  const out: Buffer[] = new Array(n)
  for (let i = 0; i < n; i++) {
    const at = i * len
    all.set(prefix, at)
    all.set(keyOf(i), at + prefix.byteLength)
    all.writeUInt32BE(peerOf(i), at + prefix.byteLength + KEY_LENGTH)
    out[i] = all.subarray(at, at + len)
  }
  return out
}

/** Runs `fn` under the store's write lock. */
export type Locked = <T>(fn: () => Promise<T>) => Promise<T>
