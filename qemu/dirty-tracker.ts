/**
 * Dirty tracking of a QEMU's RAM file from outside the process, with the kernel's soft-dirty
 * bits: `clear()` writes `4` to `/proc/PID/clear_refs` (every PTE of the process loses its
 * soft-dirty bit and is write-protected, so the next write to the page faults and sets it
 * again); `dirty()` reads the 8-byte `/proc/PID/pagemap` entries over QEMU's mapping(s) of the
 * RAM file and returns the file's page slots written since. The cost is the pagemap reads —
 * 8 bytes per 4 KiB page (2 MiB per GiB of guest RAM) — plus a walk of the maps file, never a
 * read of guest RAM.
 *
 * A slot is dirty when its pagemap entry has bit 55 (soft-dirty) set, or the page is not
 * present (bits 63 and 62 clear: nothing says what it holds, e.g. it was never touched, was
 * discarded or reclaimed), or — where the PFN is visible (CAP_SYS_ADMIN) — its PFN differs
 * from the one seen by the previous `dirty()`: a page that was unmapped (reclaim, swap-out of a
 * shmem page) loses its soft-dirty bit, and a later read fault maps it back clean.
 *
 * Traps (checked by {@link openDirtyTracker}, which says why when tracking cannot be had, so
 * the caller can fall back to re-hashing the whole file and report it):
 * - a kernel without CONFIG_MEM_SOFT_DIRTY accepts the `clear_refs` write and never sets bit
 *   55: {@link probeSoftDirty} writes fresh memory of this process and reads the bit back;
 * - hugetlbfs mappings have no per-4 KiB soft-dirty bits: refused (statfs magic, VmFlags `ht`);
 * - only writes through the tracked process's own page tables are seen: a vhost-user backend
 *   (another process mapping the same file), `write()`s to the file, or DMA by a device that
 *   does not go through QEMU's mapping are invisible — do not use it with vhost-user devices;
 * - `clear_refs` is not atomic with the pagemap read: a write that lands between reading a
 *   page's entry and the clear is lost. Use {@link DirtyTracker.collect} with the guest
 *   paused (e.g. {@link qmpFreeze}) for every round's read-and-clear; a stopped guest needs
 *   no freeze;
 * - reclaim can still hide a write when the refaulted page gets the same PFN back; lock the
 *   guest RAM (`-overcommit mem-lock=on`) where that matters (`locked` tells).
 *
 * Measured here (Linux 6.18 built without CONFIG_MEM_SOFT_DIRTY): the probe refuses, as it
 * must — see docs/bench-qemu-live.md for the pagemap read cost at 1 GiB.
 */
import { open, readFile, stat, statfs, writeFile } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { resolve } from 'node:path'
import { logger } from '@libp2p/logger'
import type { QmpClient } from './qmp.ts'
import { GuestRamError } from './errors.ts'

const log = logger('memfabric:qemu:dirty')

/** Page size of the soft-dirty bits (and of the RAM manifest's slots). */
export const DIRTY_PAGE_SIZE = 4096
/** Bytes of pagemap read per step: 4 MiB covers 2 GiB of RAM. */
export const DEFAULT_PAGEMAP_CHUNK = 4 * 1024 * 1024
const ENTRY = 8
const HUGETLBFS_MAGIC = 0x958458f6
// bits of an entry's high 32-bit word
const HI_PRESENT = 0x80000000 // bit 63
const HI_SWAPPED = 0x40000000 // bit 62
const HI_SOFT_DIRTY = 0x00800000 // bit 55
const HI_PFN_MASK = 0x007fffff // bits 32..54 of the PFN field (bits 0..54)

/** One VMA of the RAM file in the tracked process: `[start, end)` maps the file from `fileOffset`. */
export interface RamMapping {
  start: number
  end: number
  fileOffset: number
  /** `rw-s` etc. */
  perms: string
}

/** Counts of the last `dirty()`, for reports. */
export interface DirtyStats {
  /** Mapped pages read from pagemap. */
  pages: number
  softDirty: number
  notPresent: number
  /** Present, not soft-dirty, but on another physical page than at the previous read. */
  remapped: number
  /** Dirty slots returned (a slot mapped twice counts once). */
  dirty: number
}

/** Pauses and resumes the writer around a read-and-clear. */
export interface Freeze {
  pause(): Promise<void>
  resume(): Promise<void>
}

export type SoftDirtySupport = { available: true } | { available: false, reason: string }

export type DirtyTracking = { ok: true, tracker: DirtyTracker } | { ok: false, reason: string }

export interface DirtyTrackerInit {
  /** The process that maps the RAM file (QEMU; see qemu-pid.ts). */
  pid: number
  /** The RAM file (its path now; matched to the mapping by device and inode). */
  file: string
  /** procfs root. Default `/proc` (tests point it at a synthetic tree). */
  proc?: string
  /** Probe the kernel for soft-dirty support first. Default true. */
  probe?: boolean
  /** Bytes of pagemap per read. Default {@link DEFAULT_PAGEMAP_CHUNK}. */
  pagemapChunk?: number
}

let selfProbe: Promise<SoftDirtySupport> | undefined

/**
 * Whether the kernel sets soft-dirty bits: clear this process's bits, write fresh memory and
 * look for bit 55 on any page of our own small anonymous mappings. Cached per process. (Also
 * clears this process's own soft-dirty bits, which nothing else here uses.)
 */
export async function probeSoftDirty (options: { proc?: string } = {}): Promise<SoftDirtySupport> {
  if (options.proc === undefined || options.proc === '/proc') {
    selfProbe ??= probeSelf('/proc')
    return await selfProbe
  }
  return await probeSelf(options.proc)
}

async function probeSelf (proc: string): Promise<SoftDirtySupport> {
  try {
    await writeFile(`${proc}/self/clear_refs`, '4')
  } catch (err: any) {
    return { available: false, reason: `cannot write ${proc}/self/clear_refs: ${err.code ?? err.message}` }
  }
  // a fresh allocation, written after the clear: malloc'd (mmap'd for this size) outside V8's heap
  const fresh = Buffer.allocUnsafeSlow(2 * 1024 * 1024).fill(0x5a)
  const maps = parseMaps(await readFile(`${proc}/self/maps`, 'utf8'))
  const pagemap = await open(`${proc}/self/pagemap`, 'r')
  try {
    const buf = Buffer.allocUnsafeSlow(64 * 1024)
    const words = new Uint32Array(buf.buffer, buf.byteOffset, buf.length / 4)
    for (const m of maps) {
      if (m.inode !== 0 || !m.perms.startsWith('rw') || m.end - m.start > 64 * 1024 * 1024) continue
      for (let at = m.start; at < m.end; at += buf.length / ENTRY * DIRTY_PAGE_SIZE) {
        const pages = Math.min(buf.length / ENTRY, (m.end - at) / DIRTY_PAGE_SIZE)
        const { bytesRead } = await pagemap.read(buf, 0, pages * ENTRY, at / DIRTY_PAGE_SIZE * ENTRY)
        for (let i = 0; i < bytesRead / ENTRY; i++) {
          if ((words[i * 2 + 1] & HI_SOFT_DIRTY) !== 0) return { available: true }
        }
      }
    }
  } finally {
    await pagemap.close()
  }
  fresh[0] ^= 1 // keep the allocation alive through the read
  return { available: false, reason: 'the kernel sets no soft-dirty bit (no page of this process shows bit 55 of /proc/self/pagemap after clear_refs and a write): it is built without CONFIG_MEM_SOFT_DIRTY' }
}

/**
 * Open tracking of `init.file` as mapped by process `init.pid`. Resolves to `{ ok: false,
 * reason }` where tracking cannot be had (no soft-dirty in the kernel, hugetlbfs, no access to
 * the process's clear_refs or pagemap); throws GuestRamError when the process does not map
 * the file shared.
 */
export async function openDirtyTracker (init: DirtyTrackerInit): Promise<DirtyTracking> {
  const proc = init.proc ?? '/proc'
  const fs = await statfs(init.file).catch((err: any) => { throw new GuestRamError(`cannot statfs ${init.file}: ${err.code ?? err.message}`, { cause: err }) })
  if (fs.type === HUGETLBFS_MAGIC) return { ok: false, reason: `${init.file} is on hugetlbfs: soft-dirty bits do not track huge pages per 4 KiB page` }
  const mappings = await findRamMappings(init.pid, init.file, { proc })
  const flags = await vmFlags(proc, init.pid, mappings)
  if (flags.some(f => f.includes('ht'))) return { ok: false, reason: `process ${init.pid} maps ${init.file} with huge TLB pages (VmFlags ht)` }
  if (init.probe !== false) {
    const support = await probeSoftDirty({ proc })
    if (!support.available) return { ok: false, reason: support.reason }
  }
  let pagemap: FileHandle
  try {
    pagemap = await open(`${proc}/${init.pid}/pagemap`, 'r')
    await access(`${proc}/${init.pid}/clear_refs`)
  } catch (err: any) {
    return { ok: false, reason: `no access to ${proc}/${init.pid}/pagemap or clear_refs: ${err.code ?? err.message}` }
  }
  const locked = flags.length > 0 && flags.every(f => f.includes('lo'))
  return { ok: true, tracker: new DirtyTracker(init, proc, pagemap, mappings, locked) }
}

async function access (path: string): Promise<void> {
  const fh = await open(path, 'w')
  await fh.close()
}

export class DirtyTracker {
  readonly pid: number
  readonly file: string
  /** Whether every VMA of the RAM file is mlocked (reclaim cannot unmap its pages). */
  readonly locked: boolean
  /** Counts of the last `dirty()`. */
  stats: DirtyStats = { pages: 0, softDirty: 0, notPresent: 0, remapped: 0, dirty: 0 }
  private readonly proc: string
  private readonly pagemap: FileHandle
  private readonly buf: Buffer
  private readonly words: Uint32Array
  private mappings: RamMapping[]
  /** PFN of each slot at the previous read (0: unknown or not present). */
  private pfns = new Float64Array(0)
  private closed = false

  constructor (init: DirtyTrackerInit, proc: string, pagemap: FileHandle, mappings: RamMapping[], locked: boolean) {
    this.pid = init.pid
    this.file = init.file
    this.proc = proc
    this.pagemap = pagemap
    this.mappings = mappings
    this.locked = locked
    const chunk = Math.max(ENTRY, Math.floor((init.pagemapChunk ?? DEFAULT_PAGEMAP_CHUNK) / ENTRY) * ENTRY)
    this.buf = Buffer.allocUnsafeSlow(chunk)
    this.words = new Uint32Array(this.buf.buffer, this.buf.byteOffset, chunk / 4)
  }

  /** The VMAs of the RAM file found by the last `dirty()` (or at open). */
  ranges (): readonly RamMapping[] {
    return this.mappings
  }

  /** Clear the soft-dirty bits of the whole process (the kernel has no per-range clear). */
  async clear (): Promise<void> {
    await writeFile(`${this.proc}/${this.pid}/clear_refs`, '4')
  }

  /**
   * File page slots written since the last `clear()` (or not present, or remapped), sorted,
   * each once. Re-reads the maps first: VMAs split and merge as QEMU madvises its RAM.
   */
  async dirty (): Promise<Uint32Array> {
    if (this.closed) throw new GuestRamError('dirty tracker closed')
    this.mappings = await findRamMappings(this.pid, this.file, { proc: this.proc })
    const lastSlot = Math.max(...this.mappings.map(m => (m.fileOffset + m.end - m.start) / DIRTY_PAGE_SIZE))
    if (this.pfns.length < lastSlot) {
      const grown = new Float64Array(lastSlot)
      grown.set(this.pfns)
      this.pfns = grown
    }
    const stats: DirtyStats = { pages: 0, softDirty: 0, notPresent: 0, remapped: 0, dirty: 0 }
    let out = new Uint32Array(1024)
    let n = 0
    const perRead = this.buf.length / ENTRY
    for (const m of this.mappings) {
      const firstSlot = m.fileOffset / DIRTY_PAGE_SIZE
      const pages = (m.end - m.start) / DIRTY_PAGE_SIZE
      for (let done = 0; done < pages; done += perRead) {
        const want = Math.min(perRead, pages - done)
        const got = await this.readEntries(m.start / DIRTY_PAGE_SIZE + done, want)
        for (let i = 0; i < got; i++) {
          const lo = this.words[i * 2]
          const hi = this.words[i * 2 + 1]
          const slot = firstSlot + done + i
          let dirty = false
          if ((hi & HI_SOFT_DIRTY) !== 0) {
            stats.softDirty++
            dirty = true
          } else if ((hi & (HI_PRESENT | HI_SWAPPED)) === 0) {
            stats.notPresent++
            dirty = true
          }
          if ((hi & HI_PRESENT) !== 0) {
            const pfn = (hi & HI_PFN_MASK) * 0x1_0000_0000 + lo
            const before = this.pfns[slot]
            if (!dirty && before !== 0 && pfn !== 0 && before !== pfn) {
              stats.remapped++
              dirty = true
            }
            this.pfns[slot] = pfn
          } else {
            this.pfns[slot] = 0
          }
          if (!dirty) continue
          if (n === out.length) {
            const grown = new Uint32Array(out.length * 2)
            grown.set(out)
            out = grown
          }
          out[n++] = slot
        }
        stats.pages += got
      }
    }
    let slots = out.subarray(0, n)
    if (this.mappings.length > 1) slots = uniqueSorted(slots)
    stats.dirty = slots.length
    this.stats = stats
    return slots
  }

  /**
   * `dirty()` then `clear()` with the writer paused, so no write falls between the read and
   * the clear (where it would be lost). Without `freeze` the caller guarantees the writer is
   * stopped (e.g. the final round, guest stopped).
   */
  async collect (freeze?: Freeze): Promise<Uint32Array> {
    await freeze?.pause()
    try {
      const slots = await this.dirty()
      await this.clear()
      return slots
    } finally {
      await freeze?.resume()
    }
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.pagemap.close()
  }

  private async readEntries (firstPage: number, pages: number): Promise<number> {
    let got = 0
    while (got < pages * ENTRY) {
      const { bytesRead } = await this.pagemap.read(this.buf, got, pages * ENTRY - got, firstPage * ENTRY + got)
      if (bytesRead === 0) break
      got += bytesRead
    }
    if (got < pages * ENTRY) throw new GuestRamError(`short read of ${this.proc}/${this.pid}/pagemap (did the process exit?)`)
    return pages
  }
}

/** Pause the guest's vCPUs around a read-and-clear through QMP `stop` / `cont`. */
export function qmpFreeze (qmp: QmpClient): Freeze {
  return {
    pause: async () => { await qmp.execute('stop') },
    resume: async () => { await qmp.execute('cont') }
  }
}

interface MapsLine extends RamMapping {
  dev: string
  inode: number
  path: string
}

function parseMaps (text: string): MapsLine[] {
  const lines: MapsLine[] = []
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)\s*(.*)$/.exec(line)
    if (m == null) continue
    lines.push({ start: parseInt(m[1], 16), end: parseInt(m[2], 16), perms: m[3], fileOffset: parseInt(m[4], 16), dev: m[5], inode: Number(m[6]), path: m[7] })
  }
  return lines
}

/** `major:minor` of a stat `dev` as /proc/PID/maps prints it (hex). */
function mapsDev (dev: number): string {
  const major = Math.floor(dev / 256) & 0xfff
  const minor = (dev & 0xff) | (Math.floor(dev / 4096) & 0xfff00)
  return `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}`
}

/**
 * The shared VMAs of `file` in process `pid`, by inode, and device or path (overlay
 * filesystems print another device in maps than stat returns). Throws GuestRamError when
 * there is none, or the file is mapped private (the guest's writes would not reach it).
 */
export async function findRamMappings (pid: number, file: string, options: { proc?: string } = {}): Promise<RamMapping[]> {
  const proc = options.proc ?? '/proc'
  const st = await stat(file).catch((err: any) => { throw new GuestRamError(`cannot stat ${file}: ${err.code ?? err.message}`, { cause: err }) })
  const text = await readFile(`${proc}/${pid}/maps`, 'utf8').catch((err: any) => { throw new GuestRamError(`cannot read the maps of process ${pid}: ${err.code ?? err.message}`, { cause: err }) })
  const path = resolve(file)
  const dev = mapsDev(st.dev)
  const of = parseMaps(text).filter(l => l.inode === st.ino && (l.dev === dev || l.path === path))
  if (of.length === 0) throw new GuestRamError(`process ${pid} does not map ${file} (device ${dev}, inode ${st.ino})`)
  const shared = of.filter(l => l.perms[3] === 's')
  if (shared.length === 0) throw new GuestRamError(`process ${pid} maps ${file} private: guest writes never reach the file`)
  return shared.map(({ start, end, fileOffset, perms }) => ({ start, end, fileOffset, perms }))
}

/** The VmFlags of each of `mappings` in /proc/PID/smaps ([] when smaps is unreadable). */
async function vmFlags (proc: string, pid: number, mappings: RamMapping[]): Promise<string[][]> {
  const text = await readFile(`${proc}/${pid}/smaps`, 'utf8').catch(() => undefined)
  if (text === undefined) return []
  const starts = new Set(mappings.map(m => m.start))
  const flags: string[][] = []
  let current = false
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-[0-9a-f]+ /.exec(line)
    if (head != null) {
      current = starts.has(parseInt(head[1], 16))
    } else if (current && line.startsWith('VmFlags:')) {
      flags.push(line.slice(8).trim().split(/\s+/))
    }
  }
  return flags
}

function uniqueSorted (slots: Uint32Array<ArrayBuffer>): Uint32Array<ArrayBuffer> {
  const sorted = slots.slice().sort()
  let n = 0
  for (let i = 0; i < sorted.length; i++) {
    if (i === 0 || sorted[i] !== sorted[i - 1]) sorted[n++] = sorted[i]
  }
  return sorted.subarray(0, n)
}
