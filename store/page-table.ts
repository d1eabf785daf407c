/**
 * An in-memory copy of the page index (digest → pack location) in typed arrays: an
 * open-addressing hash table with linear probing, about 64 bytes per page and no object per
 * entry. classic-level costs ~5 µs of CPU per key looked up (Node-API copies both ways), which
 * was a third of the CPU of an import or export; a probe here is a fraction of a microsecond.
 *
 * The table is a cache of level, never the authority: the store fills it from one scan of the
 * index and updates it only after each index batch has committed, under the store lock.
 */
import { randomBytes } from 'node:crypto'
import type { PageLocation } from './pack.ts'

const EMPTY = 0
const FULL = 1
const DELETED = 2
const WORDS = 8

/** Seed of the slot hash, so nobody can aim digests at one run of slots. */
const SEED = randomBytes(4).readUInt32LE(0)

const NOWHERE: PageLocation = { pack: 0, offset: 0, length: 0 }
const MIN_CAPACITY = 1024
/** Entries per slot past which the table doubles. */
const MAX_LOAD = 0.7
/** Slots a cleared table may keep. */
const KEEP_CAPACITY = 1 << 16

export class PageTable {
  // set by allocate()
  private mask!: number
  private keys!: Uint32Array
  /** The same memory as `keys`: digest bytes at slot * 32. */
  private keyBytes!: Uint8Array
  private state!: Uint8Array
  private packs!: Uint32Array
  private offsets!: Float64Array
  private lengths!: Uint16Array
  /** Entries held. */
  size = 0
  /** Slots not EMPTY (entries and tombstones). */
  private used = 0
  /** Scratch words (and bytes) of the digest being probed. */
  private readonly probe = new Uint32Array(WORDS)
  private readonly probeBytes = new Uint8Array(this.probe.buffer)

  /** Whether entries carry locations (a plain digest set does not: 33 bytes per slot). */
  private readonly located: boolean

  constructor (expected = 0, options: { locations?: boolean } = {}) {
    this.located = options.locations !== false
    let cap = MIN_CAPACITY
    while (cap * MAX_LOAD < expected) cap *= 2
    this.allocate(cap)
  }

  /** Fresh empty arrays of `cap` slots. */
  private allocate (cap: number): void {
    this.mask = cap - 1
    this.keys = new Uint32Array(cap * WORDS)
    this.keyBytes = new Uint8Array(this.keys.buffer)
    this.state = new Uint8Array(cap)
    const n = this.located ? cap : 0
    this.packs = new Uint32Array(n)
    this.offsets = new Float64Array(n)
    this.lengths = new Uint16Array(n)
    this.size = 0
    this.used = 0
  }

  /** Forget every entry; a table grown large gives its memory back. */
  clear (): void {
    if (this.state.length > KEEP_CAPACITY) {
      this.allocate(MIN_CAPACITY)
    } else {
      this.state.fill(EMPTY)
      this.size = 0
      this.used = 0
    }
  }

  /**
   * Call `fn` for every entry with the table's digest bytes (the digest at `at`) and location
   * fields. The table must not change during the walk.
   */
  forEach (fn: (bytes: Uint8Array, at: number, pack: number, offset: number, length: number) => void): void {
    const state = this.state
    for (let i = 0; i < state.length; i++) {
      if (state[i] === FULL) fn(this.keyBytes, i * 32, this.packs[i] ?? 0, this.offsets[i] ?? 0, this.lengths[i] ?? 0)
    }
  }

  /** Bytes of memory the table holds. */
  get bytes (): number {
    return (this.mask + 1) * (WORDS * 4 + 1 + (this.located ? 4 + 8 + 2 : 0))
  }

  /** Slot of the probed digest, or -1 - (the first free slot on its path). */
  private find (): number {
    const p = this.probe
    const keys = this.keys
    const state = this.state
    let i = (Math.imul(p[0] ^ SEED, 0x9e3779b1) ^ p[1]) & this.mask
    let free = -1
    for (;;) {
      const s = state[i]
      if (s === EMPTY) return -1 - (free >= 0 ? free : i)
      if (s === FULL) {
        const o = i * WORDS
        if (keys[o] === p[0] && keys[o + 1] === p[1] && keys[o + 2] === p[2] && keys[o + 3] === p[3] &&
          keys[o + 4] === p[4] && keys[o + 5] === p[5] && keys[o + 6] === p[6] && keys[o + 7] === p[7]) return i
      } else if (free < 0) {
        free = i
      }
      i = (i + 1) & this.mask
    }
  }

  private load (b: Uint8Array, at: number): void {
    const p = this.probeBytes
    for (let k = 0; k < 32; k++) p[k] = b[at + k]
  }

  /** Set the location of the digest `b[at, at + 32)`, adding it if new. */
  setFields (b: Uint8Array, at: number, pack: number, offset: number, length: number): void {
    this.load(b, at)
    this.putFields(pack, offset, length)
  }

  private location (i: number): PageLocation | undefined {
    if (i < 0) return undefined
    return this.located ? { pack: this.packs[i], offset: this.offsets[i], length: this.lengths[i] } : NOWHERE
  }

  /** Location of the digest `b[at, at + 32)`. */
  get (b: Uint8Array, at = 0): PageLocation | undefined {
    this.load(b, at)
    return this.location(this.find())
  }

  /**
   * Copy into `out` (at `outAt`) a held digest whose first 8 bytes are `b[at, at + 8)`; false
   * when none is. The slot hash reads only those 8 bytes, so every such digest lies on one
   * probe path.
   */
  findPrefix (b: Uint8Array, at: number, out: Uint8Array, outAt = 0): boolean {
    const p = this.probeBytes
    for (let k = 0; k < 8; k++) p[k] = b[at + k]
    const w = this.probe
    const keys = this.keys
    const state = this.state
    for (let i = (Math.imul(w[0] ^ SEED, 0x9e3779b1) ^ w[1]) & this.mask; state[i] !== EMPTY; i = (i + 1) & this.mask) {
      if (state[i] === FULL && keys[i * WORDS] === w[0] && keys[i * WORDS + 1] === w[1]) {
        out.set(this.keyBytes.subarray(i * 32, i * 32 + 32), outAt)
        return true
      }
    }
    return false
  }

  /** Whether the digest `b[at, at + 32)` is held. */
  has (b: Uint8Array, at = 0): boolean {
    this.load(b, at)
    return this.find() >= 0
  }

  set (b: Uint8Array, at: number, loc: PageLocation): void {
    this.load(b, at)
    this.put(loc)
  }

  /** Add the digest `b[at, at + 32)` as a member (no location); false if it was there. */
  add (b: Uint8Array, at = 0): boolean {
    this.load(b, at)
    if (this.find() >= 0) return false
    this.put(NOWHERE)
    return true
  }

  delete (b: Uint8Array, at = 0): boolean {
    this.load(b, at)
    const i = this.find()
    if (i < 0) return false
    this.state[i] = DELETED
    this.size--
    return true
  }

  private put (loc: PageLocation): void {
    this.putFields(loc.pack, loc.offset, loc.length)
  }

  private putFields (pack: number, offset: number, length: number): void {
    let i = this.find()
    if (i < 0) {
      if ((this.used + 1) > (this.mask + 1) * MAX_LOAD) {
        this.rehash(this.size + 1 > (this.mask + 1) * MAX_LOAD / 2 ? (this.mask + 1) * 2 : this.mask + 1)
        i = this.find()
      }
      i = -1 - i
      if (this.state[i] === EMPTY) this.used++
      this.state[i] = FULL
      this.keys.set(this.probe, i * WORDS)
      this.size++
    }
    if (!this.located) return
    this.packs[i] = pack
    this.offsets[i] = offset
    this.lengths[i] = length
  }

  private rehash (cap: number): void {
    const { keys, state, packs, offsets, lengths } = this
    const saved = Uint32Array.from(this.probe)
    this.allocate(cap)
    for (let j = 0; j < state.length; j++) {
      if (state[j] !== FULL) continue
      this.probe.set(keys.subarray(j * WORDS, j * WORDS + WORDS))
      const i = -1 - this.find()
      this.state[i] = FULL
      this.keys.set(this.probe, i * WORDS)
      if (this.located) {
        this.packs[i] = packs[j]
        this.offsets[i] = offsets[j]
        this.lengths[i] = lengths[j]
      }
      this.size++
      this.used++
    }
    this.probe.set(saved)
  }
}

/**
 * Free the memory behind a typed array at once: a large table dropped at the end of a bulk
 * operation would otherwise stay resident until V8's next full collection, often into the
 * next operation's peak. The array (and any view of its buffer) is empty afterwards.
 */
export function release (array: ArrayBufferView): void {
  const buffer = array.buffer
  if (buffer instanceof ArrayBuffer && !buffer.detached) buffer.transfer(0)
}
