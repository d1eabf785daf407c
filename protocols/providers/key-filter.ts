/**
 * A Bloom filter of the record keys a replica holds records for. It lets an ADD write a key
 * nobody has provided yet without reading it first (a level read of a missing key costs more
 * CPU than the write), and a GET answer such a key without a read.
 *
 * Keys are 16-byte prefixes of sha2-256 digests, uniformly distributed already, so the
 * filter's hash functions are made of the key's own four 32-bit words: the words themselves,
 * then three more by double hashing (w2 + j·w3). A false positive only costs the read the
 * filter saves.
 *
 * A salt (the record store's peer number) makes (key, salt) pairs the members: each word is
 * xored with salt·M, M odd per word, so the same key under two salts probes unrelated bits.
 */
import { KEY_LENGTH } from './constants.ts'

/** Filter bits per key it is sized for (with 7 probes: ~1% false positives at capacity). */
export const FILTER_BITS_PER_KEY = 10
/** Probes per key: the key's 4 little-endian 32-bit words, then 3 derived ones. */
const PROBES = 7
const WORDS = KEY_LENGTH / 4
/** Odd multipliers of the salt, one per word (odd: salt·M is a bijection of 32-bit salts). */
const SALT_MULTIPLIERS = [0x9e3779b1, 0x85ebca6b, 0xc2b2ae35, 0x27d4eb2f]
/** Smallest filter: 2^23 bits (1 MiB), ~840k keys: a replica rarely needs to grow it. */
const MIN_BITS_LOG2 = 23
/** Largest filter: 2^32 bits (512 MiB) — the word index stays an unsigned 32-bit integer. */
const MAX_BITS_LOG2 = 32

export class KeyFilter {
  /** Keys this filter was sized for; past it the false-positive rate climbs. */
  readonly capacity: number
  /** Keys added (repeats included: an upper bound of distinct keys). */
  count = 0
  private readonly words: Uint32Array
  private readonly mask: number
  private readonly scratch = new Uint32Array(PROBES)

  constructor (capacity: number) {
    let log2 = MIN_BITS_LOG2
    while (log2 < MAX_BITS_LOG2 && 2 ** log2 < capacity * FILTER_BITS_PER_KEY) log2++
    this.words = new Uint32Array(2 ** (log2 - 5))
    this.mask = 2 ** log2 - 1
    this.capacity = Math.floor(2 ** log2 / FILTER_BITS_PER_KEY)
  }

  /** Add the key at `bytes[offset…offset+16)`, under `salt`. */
  add (bytes: Uint8Array, offset = 0, salt = 0): void {
    const bits = this.probes(bytes, offset, salt)
    for (let i = 0; i < PROBES; i++) this.words[bits[i] >>> 5] |= 1 << (bits[i] & 31)
    this.count++
  }

  /** False: the key was never added. True: it may have been. */
  has (bytes: Uint8Array, offset = 0, salt = 0): boolean {
    const bits = this.probes(bytes, offset, salt)
    for (let i = 0; i < PROBES; i++) {
      if ((this.words[bits[i] >>> 5] & (1 << (bits[i] & 31))) === 0) return false
    }
    return true
  }

  /** Whether more keys went in than the filter was sized for. */
  get full (): boolean {
    return this.count > this.capacity
  }

  /** The bits of the key at `at` (in a scratch array, valid until the next call). */
  private probes (b: Uint8Array, at: number, salt: number): Uint32Array {
    const bits = this.scratch
    for (let i = 0; i < WORDS; i++) bits[i] = (word(b, at + i * 4) ^ Math.imul(salt, SALT_MULTIPLIERS[i])) >>> 0
    // double hashing from the last two words; an odd step keeps the derived probes apart from
    // each other and from w2 (the size is a power of 2); `&` takes the sum (< 2^53) mod 2^32
    const base = bits[2]
    const step = (bits[3] | 1) >>> 0
    for (let i = 0; i < WORDS; i++) bits[i] = bits[i] & this.mask
    for (let i = WORDS; i < PROBES; i++) bits[i] = (base + (i - WORDS + 1) * step) & this.mask
    return bits
  }
}

function word (b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0
}
