/**
 * SYNTHETIC memory images for the testnet scenarios and benchmarks.
 *
 * These are not real VM memory: they are generated to have the properties that matter to
 * memfabric, in controllable amounts — zero pages, a template part shared by a VM family
 * (kernel, libraries, page cache) that lands at a different page offset in each VM, pages
 * duplicated inside one VM, unique pages, and later snapshots where a fraction of the pages
 * changed. Non-zero pages look like memory rather than noise: instruction-like blocks, text
 * and string tables, pointer-rich structures, sparse pages, and some incompressible data.
 * Tests and benchmarks accept real image files as well.
 *
 * Every page is a pure function of (seed, stream, page id), so images are deterministic for a
 * seed, are written in large chunks without holding the image in memory, and duplicates can be
 * regenerated instead of remembered. Byte layout assumes a little-endian host.
 *
 * Errors: `ERR_SYNTHETIC_INVALID_OPTIONS` (SyntheticOptionsError) for bad options,
 * `ERR_IMAGE_FORMAT` (ImageFormatError) when evolveImage's source is not whole pages.
 *
 * @example
 * ```ts
 * const template = { seed: 7, pages: 16384 }              // a 64 MiB "OS image"
 * await writeImage('vm1.mem', { sizeBytes: 256 * 2 ** 20, seed: 1, template })
 * await writeImage('vm2.mem', { sizeBytes: 256 * 2 ** 20, seed: 2, template })
 * await evolveImage('vm1.mem', 'vm1-later.mem', { changeFraction: 0.1, seed: 3 })
 * ```
 */
import { open } from 'node:fs/promises'
import { ImageFormatError } from '../store/errors.ts'
import { SyntheticOptionsError } from './errors.ts'
import type { AbortOptions } from '@libp2p/interface'

/** Page size of the images, bytes */
export const PAGE_SIZE = 4096
/** Fraction of an image's pages that are zero when none is given */
export const DEFAULT_ZERO_FRACTION = 0.25
/** Fraction of an image's pages that repeat another page of the same VM when none is given */
export const DEFAULT_DUPLICATE_FRACTION = 0.05
/** Fraction of the template's pages a VM holds when none is given */
export const DEFAULT_TEMPLATE_FRACTION = 1
/** Bytes generated and written per write call */
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
/** Among changed non-zero pages of a later snapshot: the share that was freed (became zero) */
export const DEFAULT_FREED_FRACTION = 0.2
/** Among changed non-zero pages: the share only partly rewritten (the rest is fully rewritten) */
export const DEFAULT_PARTIAL_FRACTION = 0.4

export { SyntheticOptionsError }

export interface TemplateOptions {
  /** Seed of the template: VMs of one family use the same seed and pages */
  seed: number
  /** Size of the template, pages */
  pages: number
  /**
   * Fraction of the template's pages this VM holds (default DEFAULT_TEMPLATE_FRACTION). The
   * subset depends only on the template, so VMs with equal fractions hold the same pages and a
   * smaller fraction's subset is inside a larger one's
   */
  fraction?: number
  /** Page of the image where the template part starts, wrapping at the end (default: from the VM seed) */
  offsetPages?: number
}

export interface ImageOptions {
  /** Image size, a multiple of PAGE_SIZE */
  sizeBytes: number
  /** Seed of this VM's own content */
  seed: number
  /** Fraction of all pages that are zero (default DEFAULT_ZERO_FRACTION) */
  zeroFraction?: number
  /** Shared template part (default none) */
  template?: TemplateOptions
  /** Fraction of all pages that copy another unique page of this VM (default DEFAULT_DUPLICATE_FRACTION) */
  duplicateFraction?: number
  /**
   * Fraction of all pages with content found nowhere else (default: whatever the other parts
   * leave). When the fractions sum to less than 1 the rest is zero pages (free memory)
   */
  uniqueFraction?: number
  /** Bytes per write (default DEFAULT_CHUNK_BYTES) */
  chunkBytes?: number
}

export interface EvolveOptions {
  /** Fraction of pages that differ in the later snapshot */
  changeFraction: number
  /** Seed of the changes */
  seed: number
  /** Share of changed non-zero pages that become zero (default DEFAULT_FREED_FRACTION) */
  freedFraction?: number
  /** Share of changed non-zero pages only partly rewritten (default DEFAULT_PARTIAL_FRACTION) */
  partialFraction?: number
  /** Bytes per read/write (default DEFAULT_CHUNK_BYTES) */
  chunkBytes?: number
}

export type PageKind = 'zero' | 'template' | 'duplicate' | 'unique'

export interface ImageSummary {
  pages: number
  zeroPages: number
  /** Pages of the template part; they sit at image pages templateOffsetPages.. (mod pages) */
  templatePages: number
  templateOffsetPages: number
  duplicatePages: number
  uniquePages: number
}

export interface EvolveSummary {
  pages: number
  changedPages: number
  /** Non-zero pages that became zero */
  newlyZeroPages: number
  /** Zero pages that became non-zero */
  newlyNonZeroPages: number
}

export interface SyntheticTemplate {
  readonly seed: number
  readonly pages: number
  /** Content of template page `index` (written into `out` when given) */
  page: (index: number, out?: Buffer) => Buffer
}

// stream ids keep the pseudo-random choices independent of each other
const STREAM_TEMPLATE = 1
const STREAM_UNIQUE = 2
const STREAM_EVOLVE = 3
const STREAM_CLASS = 4
const STREAM_DUPLICATE = 5
const STREAM_SUBSET = 6
const STREAM_OFFSET = 7
const STREAM_CHANGE = 8
const STREAM_CHANGE_HOW = 9
const BANK_SEED = 0x6d656d66 // fixed: code/text banks are common to all images, like a shared ISA

const WORDS_PER_PAGE = PAGE_SIZE / 4
const TWO_32 = 2 ** 32

// ---- hashing and PRNG -------------------------------------------------------------------

function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** 32-bit key of a seed of up to 53 bits */
function seedKey (seed: number): number {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new SyntheticOptionsError(`seed must be a non-negative safe integer, got ${seed}`)
  return fmix32(fmix32(seed >>> 0) ^ fmix32((Math.floor(seed / TWO_32) + 0x9e3779b9) >>> 0))
}

function hash3 (key: number, stream: number, id: number): number {
  return fmix32(fmix32(key ^ Math.imul(stream, 0x9e3779b1)) ^ Math.imul(id >>> 0, 0x85ebca77) ^ Math.floor(id / TWO_32))
}

/** Uniform in [0, 1) */
function unit (key: number, stream: number, id: number): number {
  return hash3(key, stream, id) / TWO_32
}

/** sfc32: small, fast, good enough for test data */
class Rng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor (seed: number) {
    this.a = 0x9e3779b9
    this.b = 0x243f6a88
    this.c = 0xb7e15162
    this.d = seed >>> 0
    for (let i = 0; i < 12; i++) this.next()
  }

  next (): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0
    this.d = (this.d + 1) | 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) | 0
    this.c = (this.c << 21) | (this.c >>> 11)
    this.c = (this.c + t) | 0
    return t >>> 0
  }

  /** Uniform in [0, n) for n <= 2^32 */
  below (n: number): number {
    return Math.floor(this.next() / TWO_32 * n)
  }
}

// ---- page content -------------------------------------------------------------------------

const CODE_BLOCK = 32
const CODE_BANK_BLOCKS = 256
// instruction-like fragments (x86-64 prologues, moves, calls, returns, padding)
const OPCODES = [
  [0x55], [0x48, 0x89, 0xe5], [0x48, 0x83, 0xec, 0x20], [0x48, 0x8b, 0x45, 0xf8], [0x48, 0x89, 0x7d, 0xe8],
  [0xe8, 0, 0, 0, 0], [0xc3], [0x5d], [0x90], [0x0f, 0x1f, 0x44, 0x00, 0x00], [0x31, 0xc0], [0x85, 0xc0],
  [0x74, 0x0a], [0x75, 0x12], [0x48, 0x8d, 0x3d, 0, 0, 0, 0], [0xcc], [0x41, 0x54], [0x41, 0x5c], [0xf3, 0x0f, 0x1e, 0xfa]
]
const TEXT_WORDS = (
  'the of and to in is memory page kernel linux x86_64 error warning info debug usr lib lib64 bin etc ' +
  'GLIBC_2.34 GLIBCXX_3.4 libc.so.6 libpthread.so.0 ld-linux-x86-64.so.2 /proc/self/maps systemd ' +
  'journal eth0 virtio_net virtio_blk ext4 mount cgroup ssh sshd nginx postgres HTTP/1.1 GET POST ' +
  'Content-Type: application/json text/html true false null 0x0 {"id": "name": "value": </div> <div> ' +
  'function return const let if else for while struct static int void char unsigned size_t'
).split(' ')
const SEPARATORS = [0x20, 0x20, 0x20, 0x0a, 0x00, 0x2f, 0x3d]

let banks: { code: Buffer, words: Buffer[] } | undefined

function getBanks (): { code: Buffer, words: Buffer[] } {
  if (banks != null) return banks
  const rng = new Rng(fmix32(BANK_SEED))
  const code = Buffer.alloc(CODE_BANK_BLOCKS * CODE_BLOCK)
  for (let block = 0; block < CODE_BANK_BLOCKS; block++) {
    let p = block * CODE_BLOCK
    const end = p + CODE_BLOCK
    while (p < end) {
      const op = OPCODES[rng.below(OPCODES.length)]
      for (let i = 0; i < op.length && p < end; i++) code[p++] = op[i] === 0 && i > 0 ? rng.next() & 0xff : op[i]
    }
  }
  banks = { code, words: TEXT_WORDS.map(w => Buffer.from(w, 'latin1')) }
  return banks
}

function fillRandom (u32: Uint32Array, word: number, rng: Rng): void {
  for (let i = 0; i < WORDS_PER_PAGE; i++) u32[word + i] = rng.next()
}

/** Kernel / library text: blocks from a common bank, with call targets patched per page */
function fillCode (buf: Buffer, p: number, rng: Rng): void {
  const { code } = getBanks()
  for (let off = 0; off < PAGE_SIZE; off += CODE_BLOCK) {
    // skewed towards the first blocks: hot code paths repeat
    const block = Math.min(rng.below(CODE_BANK_BLOCKS), rng.below(CODE_BANK_BLOCKS))
    code.copy(buf, p + off, block * CODE_BLOCK, block * CODE_BLOCK + CODE_BLOCK)
    if ((rng.next() & 3) === 0) buf.writeUInt32LE(rng.next(), p + off + 1 + (rng.next() & 7))
  }
}

/** String tables, logs, config files */
function fillText (buf: Buffer, p: number, rng: Rng): void {
  const { words } = getBanks()
  const end = p + PAGE_SIZE
  let pos = p
  while (pos < end) {
    const word = words[rng.below(words.length)]
    pos += word.copy(buf, pos, 0, Math.min(word.length, end - pos))
    if (pos < end) buf[pos++] = SEPARATORS[rng.below(SEPARATORS.length)]
  }
  // a random token per page (ids, hashes in logs) keeps pages distinct
  buf.writeUInt32LE((rng.next() | 1) >>> 0, p + (rng.below(WORDS_PER_PAGE) << 2))
}

/** Heap / kernel structures: 64-bit pointers into one region, small integers, some zeros */
function fillPointers (u32: Uint32Array, word: number, rng: Rng): void {
  const high = (rng.next() & 1) === 0 ? 0xffff8880 : 0x00007f00 + (rng.next() & 0xff)
  const base = rng.next() & 0xfff00000
  for (let i = 0; i < WORDS_PER_PAGE; i += 2) {
    const r = rng.next()
    const kind = r & 7
    if (kind < 5) {
      u32[word + i] = (base + ((r >>> 4) & 0xffff0)) >>> 0
      u32[word + i + 1] = high
    } else if (kind < 7) {
      u32[word + i] = (r >>> 24) + 1
      u32[word + i + 1] = 0
    } else {
      u32[word + i] = 0
      u32[word + i + 1] = 0
    }
  }
  u32[word] = rng.next() | 1
}

/** Mostly-zero pages with a few words set (bitmaps, fresh allocations) */
function fillSparse (u32: Uint32Array, word: number, rng: Rng): void {
  u32.fill(0, word, word + WORDS_PER_PAGE)
  u32[word] = rng.next() | 1
  const n = 2 + (rng.next() & 7)
  for (let i = 0; i < n; i++) u32[word + rng.below(WORDS_PER_PAGE)] = rng.next() | 1
}

// cumulative shares of code, text, pointers, sparse; the rest is random (compressed/encrypted data)
const TEMPLATE_MIX = [0.4, 0.55, 0.75, 0.85]
const UNIQUE_MIX = [0.05, 0.25, 0.55, 0.7]

/** Writes the non-zero page `id` of `stream` under `key` at page `page` of `buf` */
function fillPage (buf: Buffer, u32: Uint32Array, page: number, key: number, stream: number, id: number, mix: number[]): void {
  const rng = new Rng(hash3(key, stream, id))
  const p = page * PAGE_SIZE
  const word = page * WORDS_PER_PAGE
  const u = rng.next() / TWO_32
  if (u < mix[0]) fillCode(buf, p, rng)
  else if (u < mix[1]) fillText(buf, p, rng)
  else if (u < mix[2]) fillPointers(u32, word, rng)
  else if (u < mix[3]) fillSparse(u32, word, rng)
  else fillRandom(u32, word, rng)
}

function allocChunk (bytes: number): { buf: Buffer, u32: Uint32Array } {
  const buf = Buffer.alloc(bytes) // alloc (not allocUnsafe) is never pooled: 4-byte aligned
  return { buf, u32: new Uint32Array(buf.buffer, buf.byteOffset, bytes / 4) }
}

function isZeroPage (u32: Uint32Array, word: number): boolean {
  for (let i = 0; i < WORDS_PER_PAGE; i++) if (u32[word + i] !== 0) return false
  return true
}

// ---- template -----------------------------------------------------------------------------

/** A template (kernel, libraries, page cache) shared by a VM family; every page non-zero and distinct. */
export function generateTemplate (seed: number, pages: number): SyntheticTemplate {
  const key = seedKey(seed)
  checkCount('template pages', pages)
  return {
    seed,
    pages,
    page (index: number, out?: Buffer): Buffer {
      if (!Number.isInteger(index) || index < 0 || index >= pages) throw new SyntheticOptionsError(`template page ${index} out of range 0..${pages - 1}`)
      const { buf, u32 } = allocChunk(PAGE_SIZE)
      fillPage(buf, u32, 0, key, STREAM_TEMPLATE, index, TEMPLATE_MIX)
      if (out != null) { buf.copy(out); return out }
      return buf
    }
  }
}

/** Template page indices a VM holds, ascending; the same for every VM of the family with this fraction. */
export function templatePagesHeld (template: TemplateOptions): Uint32Array {
  const key = seedKey(template.seed)
  checkCount('template pages', template.pages)
  const fraction = checkFraction('template fraction', template.fraction ?? DEFAULT_TEMPLATE_FRACTION)
  const held: number[] = []
  for (let j = 0; j < template.pages; j++) if (unit(key, STREAM_SUBSET, j) < fraction) held.push(j)
  return Uint32Array.from(held)
}

// ---- image layout -------------------------------------------------------------------------

/** Where each kind of page sits in an image; a pure function of the options. */
export class ImageLayout {
  readonly pages: number
  readonly templateOffsetPages: number
  /** Template page index held at template slot k (image page (offset + k) mod pages) */
  readonly templateHeld: Uint32Array
  private readonly key: number
  private readonly pZero: number
  private readonly pDuplicate: number
  private readonly pUnique: number

  constructor (options: ImageOptions) {
    if (!Number.isSafeInteger(options.sizeBytes) || options.sizeBytes <= 0 || options.sizeBytes % PAGE_SIZE !== 0) {
      throw new SyntheticOptionsError(`sizeBytes must be a positive multiple of ${PAGE_SIZE}, got ${options.sizeBytes}`)
    }
    this.key = seedKey(options.seed)
    this.pages = options.sizeBytes / PAGE_SIZE
    const held = options.template != null ? templatePagesHeld(options.template) : new Uint32Array(0)
    this.templateHeld = held.length > this.pages ? held.subarray(0, this.pages) : held
    const offset = options.template?.offsetPages ?? hash3(this.key, STREAM_OFFSET, 0)
    if (!Number.isSafeInteger(offset) || offset < 0) throw new SyntheticOptionsError(`offsetPages must be a non-negative integer, got ${offset}`)
    this.templateOffsetPages = offset % this.pages
    const zero = checkFraction('zeroFraction', options.zeroFraction ?? DEFAULT_ZERO_FRACTION)
    const duplicate = checkFraction('duplicateFraction', options.duplicateFraction ?? DEFAULT_DUPLICATE_FRACTION)
    const templateShare = this.templateHeld.length / this.pages
    const unique = checkFraction('uniqueFraction', options.uniqueFraction ?? Math.max(0, 1 - zero - duplicate - templateShare))
    if (zero + duplicate + unique + templateShare > 1 + 1e-9) {
      throw new SyntheticOptionsError(`zero (${zero}) + duplicate (${duplicate}) + unique (${unique}) + template (${templateShare.toFixed(4)}) fractions exceed 1`)
    }
    // the fractions are of the whole image; the template part is placed first, others share the rest
    const rest = this.pages - this.templateHeld.length
    const scale = rest > 0 ? this.pages / rest : 0
    this.pZero = zero * scale
    this.pDuplicate = duplicate * scale
    this.pUnique = unique * scale
  }

  /** Index of the template slot at image page `page`, or -1 */
  templateSlot (page: number): number {
    const slot = (page - this.templateOffsetPages + this.pages) % this.pages
    return slot < this.templateHeld.length ? slot : -1
  }

  kind (page: number): PageKind {
    if (this.templateSlot(page) >= 0) return 'template'
    const u = unit(this.key, STREAM_CLASS, page)
    if (u < this.pZero) return 'zero'
    if (u < this.pZero + this.pDuplicate) return 'duplicate'
    if (u < this.pZero + this.pDuplicate + this.pUnique) return 'unique'
    return 'zero'
  }

  /** The unique page a duplicate copies, or -1 when none was found nearby (then it is unique itself) */
  duplicateSource (page: number): number {
    // candidates are drawn from outside the template part, which would otherwise swallow probes
    const rest = this.pages - this.templateHeld.length
    if (rest === 0) return -1
    const start = hash3(this.key, STREAM_DUPLICATE, page) % rest
    for (let probe = 0; probe < 64; probe++) {
      const candidate = (this.templateOffsetPages + this.templateHeld.length + (start + probe) % rest) % this.pages
      if (candidate !== page && this.kind(candidate) === 'unique') return candidate
    }
    return -1
  }

  /** Writes image page `page` at page `slot` of `buf`; returns the kind actually written */
  fill (buf: Buffer, u32: Uint32Array, slot: number, page: number, templateKey: number): PageKind {
    const kind = this.kind(page)
    if (kind === 'zero') {
      u32.fill(0, slot * WORDS_PER_PAGE, (slot + 1) * WORDS_PER_PAGE)
    } else if (kind === 'template') {
      fillPage(buf, u32, slot, templateKey, STREAM_TEMPLATE, this.templateHeld[this.templateSlot(page)], TEMPLATE_MIX)
    } else if (kind === 'duplicate') {
      const source = this.duplicateSource(page)
      fillPage(buf, u32, slot, this.key, STREAM_UNIQUE, source >= 0 ? source : page, UNIQUE_MIX)
      return source >= 0 ? 'duplicate' : 'unique'
    } else {
      fillPage(buf, u32, slot, this.key, STREAM_UNIQUE, page, UNIQUE_MIX)
    }
    return kind
  }
}

// ---- writing ------------------------------------------------------------------------------

/** Writes a synthetic image to `path` (created or truncated), streaming in chunks. */
export async function writeImage (path: string, options: ImageOptions, abort: AbortOptions = {}): Promise<ImageSummary> {
  const layout = new ImageLayout(options)
  const templateKey = options.template != null ? seedKey(options.template.seed) : 0
  const chunkPages = chunkPagesOf(options.chunkBytes)
  const { buf, u32 } = allocChunk(chunkPages * PAGE_SIZE)
  const summary: ImageSummary = {
    pages: layout.pages,
    zeroPages: 0,
    templatePages: layout.templateHeld.length,
    templateOffsetPages: layout.templateOffsetPages,
    duplicatePages: 0,
    uniquePages: 0
  }
  const fh = await open(path, 'w')
  try {
    for (let first = 0; first < layout.pages; first += chunkPages) {
      abort.signal?.throwIfAborted()
      const count = Math.min(chunkPages, layout.pages - first)
      for (let slot = 0; slot < count; slot++) {
        const kind = layout.fill(buf, u32, slot, first + slot, templateKey)
        if (kind === 'zero') summary.zeroPages++
        else if (kind === 'duplicate') summary.duplicatePages++
        else if (kind === 'unique') summary.uniquePages++
      }
      await writeFully(fh, buf, count * PAGE_SIZE, first * PAGE_SIZE)
    }
  } finally {
    await fh.close()
  }
  return summary
}

/**
 * Writes to `dstPath` a later snapshot of the image at `srcPath`: about `changeFraction` of the
 * pages differ — zero pages become non-zero, non-zero pages are freed, partly or fully rewritten.
 */
export async function evolveImage (srcPath: string, dstPath: string, options: EvolveOptions, abort: AbortOptions = {}): Promise<EvolveSummary> {
  const key = seedKey(options.seed)
  const change = checkFraction('changeFraction', options.changeFraction)
  const freed = checkFraction('freedFraction', options.freedFraction ?? DEFAULT_FREED_FRACTION)
  const partial = checkFraction('partialFraction', options.partialFraction ?? DEFAULT_PARTIAL_FRACTION)
  if (freed + partial > 1) throw new SyntheticOptionsError('freedFraction + partialFraction exceed 1')
  const chunkPages = chunkPagesOf(options.chunkBytes)
  const { buf, u32 } = allocChunk(chunkPages * PAGE_SIZE)
  const scratch = Buffer.alloc(PAGE_SIZE)
  const src = await open(srcPath, 'r')
  try {
    const { size } = await src.stat()
    if (size % PAGE_SIZE !== 0) throw new ImageFormatError(`${srcPath}: size ${size} is not a multiple of ${PAGE_SIZE}`)
    const pages = size / PAGE_SIZE
    const summary: EvolveSummary = { pages, changedPages: 0, newlyZeroPages: 0, newlyNonZeroPages: 0 }
    const dst = await open(dstPath, 'w')
    try {
      for (let first = 0; first < pages; first += chunkPages) {
        abort.signal?.throwIfAborted()
        const count = Math.min(chunkPages, pages - first)
        await readFully(src, buf, count * PAGE_SIZE, first * PAGE_SIZE, srcPath)
        for (let slot = 0; slot < count; slot++) {
          const page = first + slot
          if (unit(key, STREAM_CHANGE, page) >= change) continue
          summary.changedPages++
          const p = slot * PAGE_SIZE
          if (isZeroPage(u32, slot * WORDS_PER_PAGE)) {
            fillPage(buf, u32, slot, key, STREAM_EVOLVE, page, UNIQUE_MIX)
            summary.newlyNonZeroPages++
            continue
          }
          const how = unit(key, STREAM_CHANGE_HOW, page)
          if (how < freed) {
            buf.fill(0, p, p + PAGE_SIZE)
            summary.newlyZeroPages++
            continue
          }
          buf.copy(scratch, 0, p, p + PAGE_SIZE)
          if (how < freed + partial) {
            // a dirtied range inside the page, the rest untouched
            const rng = new Rng(hash3(key, STREAM_EVOLVE, page))
            const length = 64 + rng.below(PAGE_SIZE / 4 - 64)
            const start = rng.below(PAGE_SIZE - length)
            for (let i = 0; i < length; i++) buf[p + start + i] = rng.next() & 0xff
          } else {
            fillPage(buf, u32, slot, key, STREAM_EVOLVE, page, UNIQUE_MIX)
          }
          // "changed" must mean different bytes, even in the unlikely case the rewrite matched
          if (buf.compare(scratch, 0, PAGE_SIZE, p, p + PAGE_SIZE) === 0) buf[p] ^= 0x5a
          if (isZeroPage(u32, slot * WORDS_PER_PAGE)) buf[p] = 1
        }
        await writeFully(dst, buf, count * PAGE_SIZE, first * PAGE_SIZE)
      }
    } finally {
      await dst.close()
    }
    return summary
  } finally {
    await src.close()
  }
}

// ---- helpers ------------------------------------------------------------------------------

type FileHandle = Awaited<ReturnType<typeof open>>

async function writeFully (fh: FileHandle, buf: Buffer, length: number, position: number): Promise<void> {
  let done = 0
  while (done < length) {
    const { bytesWritten } = await fh.write(buf, done, length - done, position + done)
    done += bytesWritten
  }
}

async function readFully (fh: FileHandle, buf: Buffer, length: number, position: number, path: string): Promise<void> {
  let done = 0
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done)
    if (bytesRead === 0) throw new ImageFormatError(`${path}: unexpected end of file at byte ${position + done}`)
    done += bytesRead
  }
}

function chunkPagesOf (chunkBytes = DEFAULT_CHUNK_BYTES): number {
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < PAGE_SIZE) throw new SyntheticOptionsError(`chunkBytes must be an integer >= ${PAGE_SIZE}`)
  return Math.floor(chunkBytes / PAGE_SIZE)
}

function checkFraction (name: string, value: number): number {
  if (!(value >= 0 && value <= 1)) throw new SyntheticOptionsError(`${name} must be within 0..1, got ${value}`)
  return value
}

function checkCount (name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new SyntheticOptionsError(`${name} must be a non-negative integer, got ${value}`)
}
