/**
 * Append-only pack files `packs/NNNNNN.pack` holding page bytes back to back. The level index
 * records each pack's committed size and live page/byte counts; bytes past the committed size
 * are leftovers of an interrupted write and are cut off on open.
 */
import { mkdir, open, readdir, stat, truncate, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import type { FileHandle } from 'node:fs/promises'
import { ShortPackError } from './errors.ts'

const log = logger('memfabric:store:pack')

export interface PackEntry {
  /** Bytes committed (pages indexed in this pack lie below this). */
  size: number
  livePages: number
  liveBytes: number
}

export interface PageLocation {
  pack: number
  offset: number
  length: number
}

export const LOCATION_BYTES = 12

/** Appended bytes after which a datasync starts in the background (writeback overlaps hashing). */
const EARLY_SYNC_BYTES = 32 * 1024 * 1024

export function encodeLocation (loc: PageLocation): Uint8Array {
  const b = Buffer.allocUnsafe(LOCATION_BYTES)
  writeLocation(b, 0, loc)
  return b
}

/** Encode `loc` into `b` at `at` ({@link LOCATION_BYTES} bytes). */
export function writeLocation (b: Buffer, at: number, loc: PageLocation): void {
  b.writeUInt32BE(loc.pack, at)
  b.writeUIntBE(loc.offset, at + 4, 6)
  b.writeUInt16BE(loc.length, at + 10)
}

export function decodeLocation (bytes: Uint8Array): PageLocation {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return { pack: b.readUInt32BE(0), offset: b.readUIntBE(4, 6), length: b.readUInt16BE(10) }
}

export function packName (id: number): string {
  return `${String(id).padStart(6, '0')}.pack`
}

export function packKey (id: number): string {
  return String(id).padStart(10, '0')
}

/** Pack files of one repository: the one being appended to and cached read handles. */
export class Packs {
  readonly dir: string
  private readonly maxSize: number
  readonly entries = new Map<number, PackEntry>()
  private nextId = 1
  /** Only the first pack opened after start may continue a committed pack. */
  private mayContinue = true
  private active?: { id: number, fh: FileHandle, size: number }
  private readonly dirty = new Map<number, FileHandle>()
  /** Background datasyncs started while appending, so the commit's own sync finds little left. */
  private readonly early = new Set<Promise<void>>()
  private readonly writes = new Set<Promise<void>>()
  private failed?: Error
  private sinceEarly = 0
  /** Sizes of packs appended to since the last commit. */
  private readonly grown = new Map<number, number>()
  private readonly readers = new Map<number, Promise<FileHandle>>()

  constructor (dir: string, maxSize: number) {
    this.dir = dir
    this.maxSize = maxSize
  }

  /** Committed pages over every pack (pending ones not counted). */
  livePages (): number {
    let n = 0
    for (const e of this.entries.values()) n += e.livePages
    return n
  }

  /** A copy of pack `id`'s entry to change and commit (an empty one for a pack not committed yet). */
  entryCopy (id: number): PackEntry {
    return { ...(this.entries.get(id) ?? { size: 0, livePages: 0, liveBytes: 0 }) }
  }

  path (id: number): string {
    return join(this.dir, packName(id))
  }

  /** Load committed entries and cut off anything not committed. */
  async recover (entries: Map<number, PackEntry>): Promise<void> {
    await mkdir(this.dir, { recursive: true })
    for (const [id, e] of entries) this.entries.set(id, e)
    let maxId = 0
    for (const id of entries.keys()) maxId = Math.max(maxId, id)
    for (const file of await readdir(this.dir)) {
      const m = /^(\d+)\.pack$/.exec(file)
      if (m == null) continue
      const id = Number(m[1])
      maxId = Math.max(maxId, id)
      const entry = this.entries.get(id)
      if (entry == null) {
        // a pack never committed (interrupted import or compaction) or one already replaced
        log('removing uncommitted pack %s', file)
        await unlink(join(this.dir, file))
        continue
      }
      const st = await stat(join(this.dir, file))
      if (st.size > entry.size) {
        log('cutting %d uncommitted bytes off %s', st.size - entry.size, file)
        await truncate(join(this.dir, file), entry.size)
      }
    }
    this.nextId = maxId + 1
  }

  /**
   * Append bytes to the active pack (rotating when full): one buffer, or several written back
   * to back with one writev (so callers need not copy scattered pages together). The offset is
   * assigned at once; the write itself runs in the background (`done`), and `sync` waits for
   * every such write.
   */
  async append (bytes: Uint8Array | Uint8Array[]): Promise<{ pack: number, offset: number, done: Promise<void> }> {
    const parts = Array.isArray(bytes) ? bytes : [bytes]
    let total = 0
    for (const b of parts) total += b.byteLength
    let active = this.active
    if (active == null || (active.size > 0 && active.size + total > this.maxSize)) {
      active = await this.rotate()
    }
    const offset = active.size
    active.size += total
    const fh = active.fh
    const done: Promise<void> = writeAllAt(fh, parts, total, offset)
    const tracked = done.catch(err => { this.failed ??= err }).finally(() => { this.writes.delete(tracked) })
    this.writes.add(tracked)
    this.dirty.set(active.id, active.fh)
    this.grown.set(active.id, active.size)
    this.sinceEarly += total
    if (this.sinceEarly >= EARLY_SYNC_BYTES) {
      this.sinceEarly = 0
      const p: Promise<void> = Promise.all(this.writes).then(async () => fh.datasync()).catch(err => { log('early sync failed: %e', err) }).finally(() => { this.early.delete(p) })
      this.early.add(p)
    }
    return { pack: active.id, offset, done }
  }

  /** Wait for background writes; rethrow the first one that failed. */
  private async drain (): Promise<void> {
    await Promise.all(this.writes)
    await Promise.all(this.early)
    if (this.failed != null) {
      const err = this.failed
      this.failed = undefined
      throw err
    }
  }

  private async rotate (): Promise<{ id: number, fh: FileHandle, size: number }> {
    const old = this.active
    await this.drain()
    if (old != null) {
      if (this.dirty.has(old.id)) {
        await old.fh.datasync()
        this.dirty.delete(old.id)
      }
      await old.fh.close()
    }
    // continue the newest committed pack if it has room, else start a new one
    let id = this.nextId - 1
    const e = this.entries.get(id)
    let size: number
    let fh: FileHandle
    const resume = this.mayContinue && e != null && e.size < this.maxSize
    this.mayContinue = false
    if (resume) {
      fh = await open(this.path(id), 'r+')
      size = e.size
    } else {
      id = this.nextId++
      fh = await open(this.path(id), 'w')
      size = 0
    }
    this.active = { id, fh, size }
    return this.active
  }

  /** Whether anything was appended since the last {@link takeWritten}. */
  hasWritten (): boolean {
    return this.grown.size > 0
  }

  /** Packs appended to since the last call, with their sizes now. */
  takeWritten (): Map<number, number> {
    const out = new Map(this.grown)
    this.grown.clear()
    return out
  }

  /** Make every appended byte durable. */
  async sync (): Promise<void> {
    await this.drain()
    const handles = [...this.dirty.values()]
    this.dirty.clear()
    await Promise.all(handles.map(async fh => fh.datasync()))
  }

  /** Stop appending to the active pack (gc does this so every pack can be compacted). */
  async seal (): Promise<void> {
    const old = this.active
    this.active = undefined
    await this.drain()
    if (old == null) return
    if (this.dirty.has(old.id)) {
      await old.fh.datasync()
      this.dirty.delete(old.id)
    }
    await old.fh.close()
    this.mayContinue = false
  }

  /** A new pack file for compaction output; not the active pack. */
  async create (): Promise<{ id: number, fh: FileHandle }> {
    this.mayContinue = false
    const id = this.nextId++
    return { id, fh: await open(this.path(id), 'w') }
  }

  async reader (id: number): Promise<FileHandle> {
    let p = this.readers.get(id)
    if (p == null) {
      p = open(this.path(id), 'r')
      this.readers.set(id, p)
      p.catch(() => { this.readers.delete(id) })
    }
    return p
  }

  /** Read `length` bytes of a pack into `into` at `at`. */
  async read (id: number, offset: number, length: number, into: Uint8Array, at = 0): Promise<void> {
    const fh = await this.reader(id)
    let done = 0
    while (done < length) {
      const { bytesRead } = await fh.read(into, at + done, length - done, offset + done)
      if (bytesRead === 0) {
        throw new ShortPackError(`pack ${packName(id)} ends before byte ${offset + length}`)
      }
      done += bytesRead
    }
  }

  /** Forget and delete a pack file (its index entries must already point elsewhere). */
  async remove (id: number): Promise<void> {
    this.entries.delete(id)
    const r = this.readers.get(id)
    this.readers.delete(id)
    if (r != null) {
      // in-flight reads on the handle finish; later ones reopen and retry their lookup
      r.then(async fh => fh.close()).catch(() => {})
    }
    await unlink(this.path(id)).catch((err: any) => {
      if (err.code !== 'ENOENT') throw err
    })
  }

  async fileSize (id: number): Promise<number | undefined> {
    try {
      return (await stat(this.path(id))).size
    } catch {
      return undefined
    }
  }

  async close (): Promise<void> {
    await this.seal()
    const readers = [...this.readers.values()]
    this.readers.clear()
    await Promise.all(readers.map(async p => (await p.catch(() => undefined))?.close()))
  }
}

/** Most buffers handed to one writev (IOV_MAX on Linux). */
const MAX_IOV = 1024

/** Write `parts` (`total` bytes) back to back at `position`, in writevs of at most MAX_IOV buffers. */
async function writeAllAt (fh: FileHandle, parts: Uint8Array[], total: number, position: number): Promise<void> {
  if (parts.length === 1) {
    const b = parts[0]
    let w = 0
    while (w < total) w += (await fh.write(b, w, total - w, position + w)).bytesWritten
    return
  }
  let at = position
  for (let i = 0; i < parts.length; i += MAX_IOV) {
    const group = parts.slice(i, i + MAX_IOV)
    let len = 0
    for (const b of group) len += b.byteLength
    let { bytesWritten: skip } = await fh.writev(group, at)
    if (skip < len) {
      // a short writev: finish the rest buffer by buffer
      let pos = at
      for (const b of group) {
        let w = Math.min(skip, b.byteLength)
        skip -= w
        while (w < b.byteLength) w += (await fh.write(b, w, b.byteLength - w, pos + w)).bytesWritten
        pos += b.byteLength
      }
    }
    at += len
  }
}
