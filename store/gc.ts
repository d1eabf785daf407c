/**
 * Garbage collection: mark every page and block reachable from a pin (complete or partial) or
 * leased by an import in progress, delete the index entries of the rest, then compact packs
 * whose live fraction is low: copy their live pages to a new pack, commit the new locations,
 * and only then delete the old file. gc holds the store lock throughout.
 */
import { logger } from '@libp2p/logger'
import { CID } from 'multiformats/cid'
import type { AbortOptions } from '@libp2p/interface'
import { RepoCorruptError } from './errors.ts'
import { decodeChunkDigests, decodeRoot } from './manifest.ts'
import { decodeLocation, packName } from './pack.ts'
import type { PackEntry, PageLocation } from './pack.ts'
import { delPageOp, putPageOp } from './schema.ts'
import type { IndexOp } from './schema.ts'
import type { GcContext } from './internal.ts'
import { digestToCid } from './page.ts'
import type { GcResult } from './index.ts'

const log = logger('memfabric:store:gc')

const SWEEP_BATCH = 8192
/** Bytes copied per read while compacting. */
const COPY_CHUNK = 8 * 1024 * 1024

export async function collectGarbage (store: GcContext, options: AbortOptions = {}): Promise<GcResult> {
  return store.lock.run(async () => {
    store.checkOpen()
    // pages appended by imports in progress are leased; commit them so the sweep sees one index
    await store.pending.commit([], true)
    const { pages: livePages, blocks: liveBlocks } = await mark(store, options)
    const removedPages = await sweepPages(store, livePages, options)
    await sweepBlocks(store, liveBlocks)
    const reclaimedBytes = await compact(store, options)
    log('gc removed %d pages, reclaimed %d bytes', removedPages, reclaimedBytes)
    return { removedPages, reclaimedBytes }
  })
}

/**
 * The mark set of live pages: the first 8 bytes of each digest, 8 bytes per page, sorted (and
 * deduplicated) natively as a BigUint64Array. A string Set of digests took ~100 bytes per page.
 * Eight bytes decide liveness one way only: a dead page whose prefix equals a live page's is
 * kept (a leak of one page, never a loss), and the sweep walks the index in digest order, so
 * membership is a merge with a moving cursor.
 */
export class PageMarks {
  private values = new BigUint64Array(1 << 16)
  private bytes = new Uint8Array(this.values.buffer)
  private words = new Uint32Array(this.values.buffer)
  private n = 0
  /** Entries sorted and deduplicated at the front. */
  private settled = 0
  private cursor = 0

  get size (): number {
    this.settle()
    return this.n
  }

  /** Bytes held (capacity). */
  get byteLength (): number {
    return this.values.byteLength
  }

  /** Mark the digest `d[at, at + 32)`. */
  add (d: Uint8Array, at = 0): void {
    if (this.n === this.values.length) this.grow()
    // stored little-endian as the big-endian number of the prefix, so numeric order is byte order
    const o = this.n++ * 8
    const b = this.bytes
    for (let k = 0; k < 8; k++) b[o + 7 - k] = d[at + k]
  }


  private grow (): void {
    this.settle()
    // grow by half only when settling freed less than a quarter: at most ~16 bytes per page
    if (this.n < this.values.length * 0.75) return
    const next = new BigUint64Array(Math.ceil(this.values.length * 1.5))
    next.set(this.values.subarray(0, this.n))
    this.values = next
    this.bytes = new Uint8Array(next.buffer)
    this.words = new Uint32Array(next.buffer)
  }

  /** Sort and drop duplicates. */
  settle (): void {
    if (this.settled === this.n) return
    const v = this.values.subarray(0, this.n)
    v.sort()
    let w = 0
    for (let r = 0; r < v.length; r++) {
      if (w === 0 || v[r] !== v[w - 1]) v[w++] = v[r]
    }
    this.n = w
    this.settled = w
    this.cursor = 0
  }

  /**
   * Whether the digest `d[at, at + 32)` may be live. Calls must come in ascending digest order
   * (the order of the index) after the last `add`.
   */
  hasInOrder (d: Uint8Array, at = 0): boolean {
    this.settle()
    const hi = ((d[at] << 24) | (d[at + 1] << 16) | (d[at + 2] << 8) | d[at + 3]) >>> 0
    const lo = ((d[at + 4] << 24) | (d[at + 5] << 16) | (d[at + 6] << 8) | d[at + 7]) >>> 0
    const w = this.words
    let j = this.cursor
    while (j < this.n && (w[2 * j + 1] < hi || (w[2 * j + 1] === hi && w[2 * j] < lo))) j++
    this.cursor = j
    return j < this.n && w[2 * j + 1] === hi && w[2 * j] === lo
  }
}

async function mark (store: GcContext, options: AbortOptions): Promise<{ pages: PageMarks, blocks: Set<string> }> {
  const pages = new PageMarks()
  const blocks = new Set<string>()
  for (const lease of store.leases) {
    lease.pages.forEach((d, at) => { pages.add(d, at) })
    for (const k of lease.blocks) blocks.add(k)
  }
  for await (const [key, rec] of store.index.pins.iterator()) {
    options.signal?.throwIfAborted()
    const complete = rec.state === 'complete'
    blocks.add(key)
    const root = CID.parse(key)
    const bytes = await store.blocks.getBlock(root)
    if (bytes == null) {
      if (complete) throw new RepoCorruptError(`gc stopped: manifest ${key} of a pinned image is missing`)
      continue
    }
    const m = decodeRoot(root, bytes)
    for (const c of m.chunks) {
      const ck = c.toString()
      blocks.add(ck)
      const cb = await store.blocks.getBlock(c)
      if (cb == null) {
        if (complete) throw new RepoCorruptError(`gc stopped: manifest chunk ${ck} of image ${key} is missing`)
        continue
      }
      for (const e of decodeChunkDigests(c, cb)) {
        if (typeof e !== 'number') pages.add(e)
      }
    }
  }
  return { pages, blocks }
}

async function sweepPages (store: GcContext, live: PageMarks, options: AbortOptions): Promise<number> {
  let removed = 0
  const it = store.index.pages.iterator()
  try {
    while (true) {
      options.signal?.throwIfAborted()
      const entries = await it.nextv(SWEEP_BATCH)
      if (entries.length === 0) break
      const ops: IndexOp[] = []
      const dead: Uint8Array[] = []
      const deltas = new Map<number, PackEntry>()
      for (const [key, value] of entries) {
        if (live.hasInOrder(key)) continue
        const loc = decodeLocation(value)
        ops.push(delPageOp(key))
        dead.push(key)
        const e = deltas.get(loc.pack) ?? store.packs.entryCopy(loc.pack)
        e.livePages -= 1
        e.liveBytes -= loc.length
        deltas.set(loc.pack, e)
      }
      if (ops.length === 0) continue
      for (const [id, e] of deltas) ops.push(store.index.putPack(id, e))
      await store.index.write(ops)
      for (const [id, e] of deltas) store.packs.entries.set(id, e)
      for (const d of dead) store.tables.delete(d)
      removed += dead.length
      if (store.events.hasListeners('pages:removed')) store.events.dispatchEvent(new CustomEvent('pages:removed', { detail: dead.map(d => digestToCid(d)) }))
    }
  } finally {
    await it.close()
  }
  return removed
}

async function sweepBlocks (store: GcContext, live: Set<string>): Promise<void> {
  const dead: string[] = []
  for await (const key of store.blockFiles.keys()) {
    if (!live.has(key) && !store.pending.blocks.has(key)) dead.push(key)
  }
  await store.blockFiles.delete(dead)
}

async function compact (store: GcContext, options: AbortOptions): Promise<number> {
  await store.packs.seal()
  const threshold = store.options.compactThreshold
  const candidates = new Set<number>()
  let reclaimed = 0
  for (const [id, e] of [...store.packs.entries]) {
    if (e.livePages <= 0) {
      // nothing live: drop the entry first, then the file
      await store.index.write([store.index.delPack(id)], true)
      await store.packs.remove(id)
      reclaimed += e.size
    } else if (e.liveBytes < e.size * threshold) {
      candidates.add(id)
    }
  }
  if (candidates.size === 0) return reclaimed
  const live = new Map<number, Array<{ key: Uint8Array, loc: PageLocation }>>()
  for await (const [key, value] of store.index.pages.iterator()) {
    const loc = decodeLocation(value)
    if (!candidates.has(loc.pack)) continue
    const list = live.get(loc.pack) ?? []
    list.push({ key, loc })
    live.set(loc.pack, list)
  }
  for (const id of candidates) {
    options.signal?.throwIfAborted()
    const old = store.packs.entries.get(id) as PackEntry
    const pages = (live.get(id) ?? []).sort((a, b) => a.loc.offset - b.loc.offset)
    const { id: newId, fh } = await store.packs.create()
    let written = 0
    const ops: IndexOp[] = []
    const moved: Array<{ key: Uint8Array, loc: PageLocation }> = []
    try {
      for (let i = 0; i < pages.length;) {
        // coalesce adjacent live pages into one read
        const start = pages[i].loc.offset
        let end = start + pages[i].loc.length
        let j = i + 1
        while (j < pages.length && pages[j].loc.offset === end && end - start < COPY_CHUNK) {
          end += pages[j].loc.length
          j++
        }
        const buf = Buffer.allocUnsafe(end - start)
        await store.packs.read(id, start, end - start, buf)
        let w = 0
        while (w < buf.byteLength) w += (await fh.write(buf, w, buf.byteLength - w, written + w)).bytesWritten
        for (let k = i; k < j; k++) {
          const p = pages[k]
          const loc = { pack: newId, offset: written + (p.loc.offset - start), length: p.loc.length }
          ops.push(putPageOp(p.key, loc))
          moved.push({ key: p.key, loc })
        }
        written += buf.byteLength
        i = j
      }
      await fh.datasync()
    } finally {
      await fh.close()
    }
    const entry: PackEntry = { size: written, livePages: pages.length, liveBytes: written }
    ops.push(store.index.putPack(newId, entry))
    ops.push(store.index.delPack(id))
    // the new locations commit before the old pack goes away
    await store.index.write(ops, true)
    store.packs.entries.set(newId, entry)
    for (const m of moved) store.tables.set(m.key, m.loc)
    await store.packs.remove(id)
    reclaimed += old.size - written
    log('compacted %s into %s: %d -> %d bytes', packName(id), packName(newId), old.size, written)
  }
  return reclaimed
}
