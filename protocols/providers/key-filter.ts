/**
 * A Bloom filter of the page digests a replica holds records for. It lets an ADD write a key
 * nobody has provided yet without reading it first (a level read of a missing key costs more
 * CPU than the write), and a GET answer such a key without a read.
 *
 * Keys are sha2-256 digests, uniformly distributed already, so the filter's hash functions
 * are simply words of the digest. A false positive only costs the read the filter saves.
 */
/** Filter bits per key it is sized for (with 7 probes: ~1% false positives at capacity). */
export const FILTER_BITS_PER_KEY = 10
/** Probes per key: 7 of the digest's 8 little-endian 32-bit words. */
const PROBES = 7
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

  constructor (capacity: number) {
    let log2 = MIN_BITS_LOG2
    while (log2 < MAX_BITS_LOG2 && 2 ** log2 < capacity * FILTER_BITS_PER_KEY) log2++
    this.words = new Uint32Array(2 ** (log2 - 5))
    this.mask = 2 ** log2 - 1
    this.capacity = Math.floor(2 ** log2 / FILTER_BITS_PER_KEY)
  }

  /** Add the digest at `bytes[offset…offset+32)`. */
  add (bytes: Uint8Array, offset = 0): void {
    for (let i = 0; i < PROBES; i++) {
      const bit = this.probe(bytes, offset + i * 4)
      this.words[bit >>> 5] |= 1 << (bit & 31)
    }
    this.count++
  }

  /** False: the digest was never added. True: it may have been. */
  has (bytes: Uint8Array, offset = 0): boolean {
    for (let i = 0; i < PROBES; i++) {
      const bit = this.probe(bytes, offset + i * 4)
      if ((this.words[bit >>> 5] & (1 << (bit & 31))) === 0) return false
    }
    return true
  }

  /** Whether more keys went in than the filter was sized for. */
  get full (): boolean {
    return this.count > this.capacity
  }

  private probe (b: Uint8Array, at: number): number {
    return ((b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0) & this.mask
  }
}
