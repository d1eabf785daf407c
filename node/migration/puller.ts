import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import type { Manifest, Page } from '../../store/index.ts'
import { PAGE_SIZE } from '../../store/constants.ts'
import { Chunker } from '../../store/manifest.ts'
import { release } from '../../store/page-table.ts'
import type { Block } from '../../store/manifest.ts'
import { DEFAULT_CHUNK_MAX, DEFAULT_CHUNK_MIN, DEFAULT_CHUNK_MODULUS } from '../../store/options.ts'
import type { ManifestPatch, ThinManifest } from '../../protocols/pages/index.ts'
import { THIN_ENTRY_BYTES, THIN_PAGE, zeroRunLength } from '../../protocols/pages/index.ts'
import {
  DEFAULT_DISCOVERY_TIMEOUT, DEFAULT_FETCHES_PER_HOLDER, DEFAULT_RESOLVE_BATCH, DEFAULT_SLICE_PAGES, DEFAULT_STORE_BATCH,
  DEFAULT_UNKNOWN_RTT, DEFAULT_WINDOW_PAGES, DEFAULT_WINDOWS_IN_FLIGHT
} from './constants.ts'
import { ManifestUnavailableError, PagesUnavailableError } from './errors.ts'
import { DigestLog } from './digest-log.ts'
import { PrefixIndex } from './prefix-index.ts'
import { TIERS } from './index.ts'
import type { Holder, MigrationReport, PullDeps, PullOptions, Tier, TierFigures } from './index.ts'

const log = logger('memfabric:migration')

const TIER_RANK: Record<Tier, number> = { local: 0, site: 1, remote: 2, source: 3 }

/** Map key of a CID: its bytes as a binary string (cheaper than base32 `toString()`). */
/** A holder with what planning needs of it, computed once. */
interface Candidate {
  holder: Holder
  id: string
  rank: number
  rtt: number
}

/**
 * Whether pages fetched from `tier` are announced at once. A page from a same-site peer is
 * already on record as held in this site (presence queries find this node too), so announcing
 * it again would only send records across sites; the node's periodic republish lists it.
 */
function announces (tier: Tier): boolean {
  return tier !== 'site'
}

function keyOf (cid: CID): string {
  return Buffer.from(cid.bytes.buffer, cid.bytes.byteOffset, cid.bytes.byteLength).toString('latin1')
}

/** Where verified items go; `tier` says where they came from. */
type Sink = (items: Array<{ cid: CID, bytes: Uint8Array }>, tier: Tier) => Promise<void>

/** A distinct page of a window: how many slots it fills, and the basis page of its first slot. */
interface WindowEntry {
  cid: CID
  length: number
  slots: number
  ref?: CID
}

interface FetchPlan {
  useDht: boolean
  sink: Sink
  kind: 'pages' | 'manifest'
  /** Per page key, the page of the basis image in the same slot: the source may send the page compressed against it. */
  refs?: Map<string, CID>
}

/**
 * Pull an image into the local store from the nearest holders and pin it. Re-running after an
 * interruption fetches only the pages still missing.
 */
export async function pullImage (deps: PullDeps, options: PullOptions): Promise<MigrationReport> {
  return new Puller(deps, options).run()
}

class Puller {
  private readonly deps: PullDeps
  private readonly options: PullOptions
  private readonly tiers: Record<Tier, TierFigures>
  private readonly dropped = new Map<string, string>()
  private readonly manifestFigures = { blocks: 0, fetched: 0, wireBytes: 0, rebuilt: 0 }
  private readonly delta = { pages: 0, references: 0 }
  /** Pages some window is fetching now: a later window waits for them instead of fetching them twice. */
  private readonly fetching = new Map<string, Promise<void>>()
  /** An older image of the VM whose manifest this node holds (from the manifest patch). */
  private basis?: CID
  /** The thin manifest's pass found and stored every page of the image. */
  private thinComplete = false
  /** Slots (and their bytes) of pages fetched while rebuilding the manifest: the page walk finds them held and must not count them local. */
  private readonly prefetched = { slots: 0, bytes: 0 }
  private wanBytes = 0
  private slotsDone = 0
  private totalSlots = 0
  private zeroPages = 0
  private distinct = 0

  constructor (deps: PullDeps, options: PullOptions) {
    this.deps = deps
    this.options = options
    this.tiers = Object.fromEntries(TIERS.map(t => [t, { pages: 0, bytes: 0, wireBytes: 0 }])) as Record<Tier, TierFigures>
  }

  async run (): Promise<MigrationReport> {
    const started = performance.now()
    const { store } = this.deps
    const { root, signal } = this.options

    await this.pullManifest()
    const manifest = await store.readManifest(root, { signal })
    this.totalSlots = manifest.pages
    // protects what has arrived from gc, and lets a re-run resume
    await store.pin(root, { partial: true, signal })

    // the thin manifest's pass stored every page: count the slots, no second pass of lookups
    if (this.thinComplete) await this.countSlots()
    else await this.pullPages()
    this.tiers.local.pages -= this.prefetched.slots
    this.tiers.local.bytes -= this.prefetched.bytes

    await store.pin(root, { name: this.options.name, signal })
    // windows dedupe only within themselves: the store knows the image's exact distinct pages
    this.distinct = (await store.inspect(root, { signal })).distinctPages
    if (this.options.out != null) {
      this.progress('export')
      await store.exportImage(root, this.options.out, { signal })
    }
    this.progress('done')

    const durationMs = performance.now() - started
    return {
      root: root.toString(),
      name: this.options.name,
      out: this.options.out,
      size: manifest.size,
      pages: manifest.pages,
      zeroPages: this.zeroPages,
      distinctPages: this.distinct,
      tiers: this.tiers,
      manifest: this.manifestFigures,
      delta: this.delta,
      wanBytes: this.wanBytes,
      droppedHolders: [...this.dropped].map(([peerId, reason]) => ({ peerId, reason })),
      durationMs,
      throughput: manifest.size / Math.max(durationMs / 1000, 1e-3),
      rounds: 1
    }
  }

  /** Root first (only the source is known to have it), then the chunk blocks from whoever is nearest. */
  private async pullManifest (): Promise<void> {
    const { store } = this.deps
    const { root, signal } = this.options
    this.progress('manifest')
    if (!await store.hasBlock(root, { signal })) {
      await this.fetchAll([root], { useDht: false, sink: this.blockSink(), kind: 'manifest' })
    }
    let manifest
    try {
      manifest = await store.readManifest(root, { signal })
    } catch (err: any) {
      throw new ManifestUnavailableError(`manifest ${root} could not be read: ${err.message}`, { cause: err })
    }
    let missing = await this.absentBlocks(manifest.chunks)
    this.manifestFigures.blocks = manifest.chunks.length + 1
    if (missing.length > 0 && this.deps.describe(this.options.source).site !== this.deps.site) {
      missing = await this.patchManifest(manifest, missing)
    }
    if (missing.length > 0) {
      // chunks shared with images held in this site come from there
      await this.fromSite(missing, this.blockStorer())
      missing = await this.absentBlocks(missing)
    }
    if (missing.length > 0 && this.basis == null && this.deps.describe(this.options.source).site !== this.deps.site) {
      missing = await this.thinManifest(manifest, missing)
    }
    if (missing.length > 0) {
      await this.fetchAll(missing, { useDht: false, sink: this.blockSink(), kind: 'manifest' })
    }
  }

  /**
   * Rebuild manifest chunks instead of fetching them across sites: the source says how the image
   * differs from an older image (its basis); when the own store or a same-site peer has that
   * image's manifest, the chunks are cut again from its slots with the differences applied.
   * Only chunks whose CID the root lists are kept, so a wrong patch costs a fetch, never
   * a wrong manifest. Returns the chunks still missing.
   */
  private async patchManifest (manifest: Manifest, missing: CID[]): Promise<CID[]> {
    const { store } = this.deps
    const signal = this.options.signal
    let patch: ManifestPatch | undefined
    try {
      // transfers are bounded by the exchange's idle timeout (no frame for 30 s), not a deadline
      // that cuts off one still making progress on a loaded host
      const answer = await this.deps.manifestPatch(this.options.source, this.options.root, { signal: this.options.signal })
      this.manifestFigures.wireBytes += answer.wireBytes
      this.wanBytes += answer.wireBytes
      patch = answer.patch
    } catch (err: any) {
      signal?.throwIfAborted()
      log.error('source sent no manifest patch - %e', err)
    }
    if (patch == null) return missing
    const basis = patch.basis
    try {
      if (!await store.hasBlock(basis, { signal })) await this.fromSite([basis], this.blockStorer())
      const old = await store.readManifest(basis, { signal })
      if (old.pages !== manifest.pages) return missing
      const absent = await this.absentBlocks(old.chunks)
      if (absent.length > 0) await this.fromSite(absent, this.blockStorer())
      const wanted = new Set(missing.map(keyOf))
      const chunker = new Chunker({ modulus: DEFAULT_CHUNK_MODULUS, min: DEFAULT_CHUNK_MIN, max: DEFAULT_CHUNK_MAX })
      const digests = Buffer.from(patch.digests.buffer, patch.digests.byteOffset, patch.digests.byteLength)
      const keep = async (block: Block | undefined): Promise<void> => {
        if (block != null && wanted.has(keyOf(block.cid))) await store.putBlock(block.cid, block.bytes, { signal })
      }
      let next = 0
      for await (const slot of store.pageSlots(basis, { signal })) {
        if (next < patch.slots.length && patch.slots[next] === slot.index) {
          await keep(patch.kinds[next] === 0 ? chunker.pushZero() : chunker.pushDigest(digests, next * 32))
          next++
        } else {
          await keep(chunker.push(slot.cid?.multihash.digest))
        }
      }
      await keep(chunker.flush())
      this.basis = basis
    } catch (err: any) {
      signal?.throwIfAborted()
      log.error('manifest of %c not rebuilt from basis %c - %e', this.options.root, basis, err)
    }
    const still = await this.absentBlocks(missing)
    this.manifestFigures.rebuilt = missing.length - still.length
    log('rebuilt %d of %d manifest chunks from basis %c', missing.length - still.length, missing.length, basis)
    return still
  }

  /**
   * Rebuild manifest chunks from the source's thin manifest (digest prefixes, ~9 bytes a slot
   * instead of 36): a prefix the own store holds a page for resolves there; the other pages are
   * fetched by prefix from same-site peers, then from the source, and hashing each gives its
   * digest. Only when no site but ours and the source's is known: a page this site lacks then
   * has no holder nearer than the source's site, which the normal path's provider lookups
   * could not improve on. Only chunks whose CID the root lists are kept. Returns the chunks
   * still missing.
   */
  private async thinManifest (manifest: Manifest, missing: CID[]): Promise<CID[]> {
    const { root, source, signal } = this.options
    const sourceSite = this.deps.describe(source).site
    if (this.deps.peers().some(p => p.site !== this.deps.site && p.site !== sourceSite)) return missing
    let thin: ThinManifest | undefined
    try {
      const answer = await this.deps.manifestThin(source, root, { signal, maxEntries: manifest.pages })
      this.manifestFigures.wireBytes += answer.wireBytes
      this.wanBytes += answer.wireBytes
      thin = answer.thin
    } catch (err: any) {
      signal?.throwIfAborted()
      log.error('source sent no thin manifest of %c - %e', root, err)
    }
    if (thin == null) return missing
    const index = new PrefixIndex(thin)
    // the full digests of what is found go to a scratch file until the chunks are cut
    const digestLog = await DigestLog.create()
    let rebuilt = false
    let digests: Uint8Array | undefined
    try {
      if (index.totalSlots !== manifest.pages) {
        log.error('thin manifest of %c has %d slots, the image %d', root, index.totalSlots, manifest.pages)
        return missing
      }
      for (let from = 0; from < index.size; from += DEFAULT_RESOLVE_BATCH) {
        const to = Math.min(index.size, from + DEFAULT_RESOLVE_BATCH)
        const held = await this.deps.store.resolvePrefixes?.(index.prefixes(from, to), { signal }) ?? []
        held.forEach((digest, j) => {
          if (digest == null) return
          index.setFound(from + j)
          digestLog.append(from + j, digest)
        })
      }
      await this.prefetch(index, [...this.sitePeers().filter(p => !p.peerId.equals(source)), this.deps.describe(source)], digestLog)
      // every page found has its record in the log
      const all = digests = new Uint8Array(index.size * 32)
      await digestLog.replay((k, digest) => { all.set(digest, k * 32) })
      rebuilt = await this.cutChunks(thin, index, all, new Set(missing.map(keyOf)))
    } finally {
      // tens of MB for a large image: free them before the pages and the export
      index.dispose()
      release(thin.entries)
      if (digests != null) release(digests)
      await digestLog.close()
    }
    const still = await this.absentBlocks(missing)
    // every chunk cut from digests of stored pages and matched by the root: every page is here
    this.thinComplete = rebuilt && still.length === 0
    this.manifestFigures.rebuilt += missing.length - still.length
    log('rebuilt %d of %d manifest chunks of %c from its thin manifest (%s)', missing.length - still.length, missing.length, root, rebuilt ? 'all slots' : 'up to a page not found')
    return still
  }

  /**
   * Fetch by prefix what `index` has not found yet, in windows in order of appearance: each
   * window asks `holders` in turn (same-site peers, then the source) for what the ones before
   * did not send; DEFAULT_WINDOWS_IN_FLIGHT windows at once, so the tiers overlap. A holder
   * that fails is dropped.
   */
  private async prefetch (index: PrefixIndex, holders: Holder[], digestLog: DigestLog): Promise<void> {
    let from = 0
    const worker = async (): Promise<void> => {
      while (true) {
        const window = index.missing(from, this.options.windowPages ?? DEFAULT_WINDOW_PAGES)
        from = window.next
        if (window.indexes.length === 0) return
        for (const holder of holders) {
          const left = window.indexes.filter(k => index.found[k] === 0)
          if (left.length === 0) break
          if (!this.dropped.has(holder.peerId.toString())) await this.prefetchFrom(holder, index, left, digestLog)
        }
      }
    }
    // never return while a window still writes behind our back
    const results = await Promise.allSettled(Array.from({ length: DEFAULT_WINDOWS_IN_FLIGHT }, worker))
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed != null) throw failed.reason
  }

  /** Fetch pages `ks` of `index` by prefix from `holder`; a holder that fails is dropped. */
  private async prefetchFrom (holder: Holder, index: PrefixIndex, ks: Uint32Array, digestLog: DigestLog): Promise<void> {
    const tier = this.tierOf(holder)
    const crossSite = holder.site !== this.deps.site
    const sink = this.pageSink()
    // reported once stored: a caller that stops the pull on progress keeps what it saw
    const store: Sink = async (items, from) => { await sink(items, from); this.progress('pages') }
    await this.drain(holder, store, async (take) => {
      const result = await this.deps.fetchByPrefix(holder.peerId, index.pack(ks), {
        compress: crossSite,
        signal: this.options.signal,
        onPage: (cid, bytes) => {
          const i = index.indexOf(cid.multihash.digest)
          if (i < 0 || index.found[i] === 1) return
          index.setFound(i)
          digestLog.append(i, cid.multihash.digest)
          const slots = index.slots[i]
          this.tiers[tier].pages++
          this.tiers[tier].bytes += bytes.byteLength
          this.tiers.local.pages += slots - 1
          this.tiers.local.bytes += (slots - 1) * bytes.byteLength
          this.prefetched.slots += slots
          this.prefetched.bytes += slots * bytes.byteLength
          take(cid, bytes)
        }
      })
      this.accountWire(tier, 'pages', result.wireBytes, crossSite)
    })
  }

  /**
   * Run `fetch` against `holder`, writing what it hands to `take` through `sink` in store
   * batches while it runs; a holder whose fetch fails is dropped (what it sent is kept).
   */
  private async drain (holder: Holder, sink: Sink, fetch: (take: (cid: CID, bytes: Uint8Array) => void) => Promise<void>): Promise<void> {
    const tier = this.tierOf(holder)
    // pages are copied into a buffer of the batch, freed once the batch is stored: the frames
    // they arrived in then die young, where views kept them (1 MiB each) until V8's next full
    // collection, which external memory triggers only 64 MB later
    let buffer: Buffer | undefined
    let batch: Array<{ cid: CID, bytes: Uint8Array }> = []
    let writing = Promise.resolve()
    const write = (): void => {
      const items = batch
      const held = buffer
      batch = []
      buffer = undefined
      if (items.length > 0) writing = writing.then(async () => sink(items, tier)).finally(() => { if (held != null) release(held) })
    }
    try {
      await fetch((cid, bytes) => {
        if (bytes.byteLength <= PAGE_SIZE) {
          buffer ??= Buffer.allocUnsafeSlow(DEFAULT_STORE_BATCH * PAGE_SIZE)
          const at = batch.length * PAGE_SIZE
          buffer.set(bytes, at)
          bytes = buffer.subarray(at, at + bytes.byteLength)
        }
        // a manifest block (larger) is kept as it came
        batch.push({ cid, bytes })
        if (batch.length >= DEFAULT_STORE_BATCH) write()
      })
    } catch (err: any) {
      if (this.options.signal?.aborted === true) throw err
      const id = holder.peerId.toString()
      log('dropping holder %s (%s) - %e', id, tier, err)
      this.dropped.set(id, err.message ?? String(err))
    } finally {
      write()
      await writing
    }
  }

  /**
   * Cut the manifest's chunks from a thin manifest and the digests of the pages found (`all`,
   * page k's at k * 32), and store those in `wanted`. Stops at the first page not found
   * (boundaries after it are unknown); returns whether every slot was cut.
   */
  private async cutChunks (thin: ThinManifest, index: PrefixIndex, all: Uint8Array, wanted: Set<string>): Promise<boolean> {
    const signal = this.options.signal
    const chunker = new Chunker({ modulus: DEFAULT_CHUNK_MODULUS, min: DEFAULT_CHUNK_MIN, max: DEFAULT_CHUNK_MAX })
    const digests = Buffer.from(all.buffer, all.byteOffset, all.byteLength)
    const keep = async (block: Block | undefined): Promise<void> => {
      if (block != null && wanted.has(keyOf(block.cid))) await this.deps.store.putBlock(block.cid, block.bytes, { signal })
    }
    for (let i = 0; i < thin.count; i++) {
      if (thin.entries[i * THIN_ENTRY_BYTES] !== THIN_PAGE) {
        for (let n = zeroRunLength(thin, i); n > 0; n--) await keep(chunker.pushZero())
        continue
      }
      const k = index.indexOf(thin.entries, i * THIN_ENTRY_BYTES + 1)
      if (index.found[k] !== 1) return false
      await keep(chunker.pushDigest(digests, k * 32))
    }
    await keep(chunker.flush())
    return true
  }

  private async absentBlocks (cids: CID[]): Promise<CID[]> {
    const absent: CID[] = []
    for (const cid of cids) {
      if (!await this.deps.store.hasBlock(cid, { signal: this.options.signal })) absent.push(cid)
    }
    return absent
  }

  /** Same-site peers a migration may ask (not itself, not dropped). */
  private sitePeers (): Holder[] {
    return this.deps.peers().filter(p => p.site === this.deps.site && !p.peerId.equals(this.deps.self) && !this.dropped.has(p.peerId.toString()))
  }

  /**
   * Best effort: fetch `cids` (pages or manifest blocks) from same-site peers, each peer asked
   * for what the ones before it did not send, and hand every verified item to `take`. A peer
   * answers "missing" for what it lacks; a second pass runs only when a peer failed (a loaded
   * peer may time out).
   */
  private async fromSite (cids: CID[], take: (cid: CID, bytes: Uint8Array) => Promise<void>): Promise<void> {
    const sitePeers = this.sitePeers()
    let pending = cids
    for (let pass = 0; pass < 2 && pending.length > 0; pass++) {
      let failed = false
      for (const peer of sitePeers) {
        if (pending.length === 0) break
        const items: Array<{ cid: CID, bytes: Uint8Array }> = []
        try {
          // bounded by the exchange's idle timeout: a deadline cut off reference pages still
          // arriving on a loaded host, and the pull then sent no deltas
          await this.deps.fetch(peer.peerId, pending, { compress: false, signal: this.options.signal, onBlock: (cid, bytes) => { items.push({ cid, bytes }) } })
        } catch (err: any) {
          this.options.signal?.throwIfAborted()
          failed = true
          log.error('fetch from same-site peer %p failed - %e', peer.peerId, err)
        }
        // what arrived verified before a failure is kept
        const got = new Set<string>()
        for (const { cid, bytes } of items) {
          await take(cid, bytes)
          got.add(keyOf(cid))
        }
        pending = pending.filter(cid => !got.has(keyOf(cid)))
      }
      if (!failed) break
    }
  }

  private blockStorer (): (cid: CID, bytes: Uint8Array) => Promise<void> {
    return async (cid, bytes) => { await this.deps.store.putBlock(cid, bytes, { signal: this.options.signal }) }
  }

  private blockSink (): Sink {
    return async (items) => {
      for (const { cid, bytes } of items) {
        await this.deps.store.putBlock(cid, bytes, { signal: this.options.signal })
      }
    }
  }

  private pageSink (): Sink {
    return async (items, tier) => {
      // the page client verified every page against its CID on arrival
      await this.deps.store.putMany(items as Page[], { verified: true, announce: announces(tier), signal: this.options.signal })
    }
  }

  /** Count the image's zero slots and, as local, every other slot (what was fetched is subtracted after). */
  private async countSlots (): Promise<void> {
    for await (const chunk of this.deps.store.slotArrays(this.options.root, { signal: this.options.signal })) {
      for (let i = 0; i < chunk.count; i++) {
        if (chunk.zero[i] === 1) {
          this.zeroPages++
        } else {
          this.tiers.local.pages++
          this.tiers.local.bytes += chunk.lengths[i]
        }
      }
      this.slotsDone += chunk.count
    }
    this.progress('pages')
  }

  /** Walk the image's slots in windows of distinct pages and fetch what the store lacks. */
  private async pullPages (): Promise<void> {
    const { store } = this.deps
    const { root, signal } = this.options
    const windowPages = this.options.windowPages ?? DEFAULT_WINDOW_PAGES
    const inFlight = new Set<Promise<void>>()
    let window = new Map<string, WindowEntry>()
    let windowSlots = 0
    // walked in step with the image: same slot, older content
    let basisSlots = this.basis != null ? store.pageSlots(this.basis, { signal }) : undefined
    // the basis only makes pages smaller: if its blocks go away (gc of the unpinned copy), go on without
    const oldSlot = async (): Promise<CID | undefined> => {
      if (basisSlots == null) return undefined
      try {
        return (await basisSlots.next()).value?.cid ?? undefined
      } catch (err: any) {
        signal?.throwIfAborted()
        log.error('basis %c unreadable, no more deltas - %e', this.basis, err)
        basisSlots = undefined
        return undefined
      }
    }

    const flush = async (): Promise<void> => {
      const entries = [...window.values()]
      const slots = windowSlots
      window = new Map()
      windowSlots = 0
      const task = this.pullWindow(entries, slots)
      inFlight.add(task)
      task.finally(() => inFlight.delete(task)).catch(() => {})
      if (inFlight.size >= DEFAULT_WINDOWS_IN_FLIGHT) {
        await Promise.race(inFlight)
      }
    }

    try {
      for await (const slot of store.pageSlots(root, { signal })) {
        const old = await oldSlot()
        if (slot.cid == null) {
          this.zeroPages++
          this.slotsDone++
          continue
        }
        windowSlots++
        const key = keyOf(slot.cid)
        const entry = window.get(key)
        if (entry != null) {
          entry.slots++
        } else {
          const ref = old != null && !old.equals(slot.cid) ? old : undefined
          window.set(key, { cid: slot.cid, length: slot.length, slots: 1, ref })
          if (window.size >= windowPages) await flush()
        }
      }
      if (window.size > 0) await flush()
    } finally {
      await basisSlots?.return(undefined)
      // surface the first failure, but never leave a window running behind our back
      const results = await Promise.allSettled(inFlight)
      const failed = results.find(r => r.status === 'rejected')
      if (failed != null) throw (failed as PromiseRejectedResult).reason
    }
  }

  private async pullWindow (entries: WindowEntry[], slots: number): Promise<void> {
    const { store } = this.deps
    const held = await store.has(entries.map(e => e.cid), { signal: this.options.signal })
    const missing: CID[] = []
    const refs = new Map<string, CID>()
    const fetching: string[] = []
    const elsewhere = new Set<Promise<void>>()
    entries.forEach((entry, i) => {
      const key = keyOf(entry.cid)
      const other = held[i] ? undefined : this.fetching.get(key)
      if (held[i] || other != null) {
        // held, or on its way for an earlier window: it comes from the local store
        if (other != null) elsewhere.add(other)
        this.tiers.local.pages += entry.slots
        this.tiers.local.bytes += entry.slots * entry.length
      } else {
        missing.push(entry.cid)
        fetching.push(key)
        if (entry.ref != null) refs.set(key, entry.ref)
        // repeats of a fetched page inside the image come from the local store
        if (entry.slots > 1) {
          this.tiers.local.pages += entry.slots - 1
          this.tiers.local.bytes += (entry.slots - 1) * entry.length
        }
      }
    })
    this.slotsDone += slots - missing.length
    this.progress('pages')
    if (missing.length > 0) {
      const task = this.fetchAll(missing, { useDht: true, sink: this.pageSink(), kind: 'pages', refs })
      for (const key of fetching) this.fetching.set(key, task)
      try {
        await task
      } finally {
        for (const key of fetching) this.fetching.delete(key)
      }
    }
    await Promise.all(elsewhere)
  }

  /** Find holders for `cids`, fetch every one, re-plan around failures; throws if some stay unavailable. */
  private async fetchAll (cids: CID[], opts: FetchPlan): Promise<void> {
    const candidates = await this.discover(cids, opts)
    const source = this.candidate(this.deps.describe(this.options.source))
    const tried = new Map<string, string[]>()
    let pending = cids

    while (pending.length > 0) {
      this.options.signal?.throwIfAborted()
      const plan = this.plan(pending, candidates, source, tried)
      if (plan.unavailable.length > 0) {
        const sourceId = this.options.source.toString()
        throw new PagesUnavailableError(
          `${plan.unavailable.length} ${opts.kind === 'pages' ? 'pages' : 'manifest blocks'} of ${this.options.root} are held by no reachable peer ` +
          `(the source ${this.dropped.has(sourceId) ? `failed: ${this.dropped.get(sourceId)}` : 'does not have them'}); ` +
          're-run the migration to fetch only what is missing', plan.unavailable.length)
      }
      const received = new Set<string>()
      await Promise.all([...plan.assignments.values()].map(async ({ holder, cids: assigned }) => {
        await this.fetchFrom(holder.holder, assigned, opts, received)
      }))
      pending = pending.filter(cid => !received.has(keyOf(cid)))
    }
  }

  private candidate (holder: Holder): Candidate {
    return { holder, id: holder.peerId.toString(), rank: TIER_RANK[this.tierOf(holder)], rtt: this.rtt(holder) }
  }

  /** Candidate holders per CID, best first: same-site peers that say they hold it, then DHT providers. */
  private async discover (cids: CID[], opts: FetchPlan): Promise<Map<string, Candidate[]>> {
    const candidates = new Map<string, Candidate[]>()
    const add = (key: string, holder: Candidate): void => {
      const list = candidates.get(key)
      if (list == null) candidates.set(key, [holder])
      else if (!list.includes(holder)) list.push(holder)
    }
    const keys = cids.map(keyOf)
    const source = this.options.source
    const sitePeers = this.sitePeers().filter(p => !p.peerId.equals(source)).map(p => this.candidate(p))

    // presence covers pages; manifest blocks held in the site were fetched from there already
    await Promise.all((opts.kind === 'pages' ? sitePeers : []).map(async peer => {
      try {
        const bits = await this.deps.presence(peer.holder.peerId, cids, { signal: this.signal(DEFAULT_DISCOVERY_TIMEOUT) })
        for (let i = 0; i < cids.length; i++) if (bits[i]) add(keys[i], peer)
      } catch (err: any) {
        log('presence query to %p failed - %e', peer.holder.peerId, err)
      }
    }))

    const unresolved: number[] = []
    for (let i = 0; i < cids.length; i++) if (!candidates.has(keys[i])) unresolved.push(i)
    if (opts.useDht && unresolved.length > 0) {
      try {
        const found = await this.deps.findProviders(unresolved.map(i => cids[i]), { signal: this.signal(DEFAULT_DISCOVERY_TIMEOUT) })
        const known = new Map<string, Candidate>()
        unresolved.forEach((index, j) => {
          for (const peer of found[j] ?? []) {
            if (peer.equals(this.deps.self) || peer.equals(source)) continue
            const id = peer.toString()
            let holder = known.get(id)
            if (holder == null) {
              holder = this.candidate(this.deps.describe(peer))
              known.set(id, holder)
            }
            add(keys[index], holder)
          }
        })
      } catch (err: any) {
        log('provider lookup failed - %e', err)
      }
    }
    for (const list of candidates.values()) {
      if (list.length > 1) list.sort((a, b) => (a.rank - b.rank) || (a.rtt - b.rtt))
    }
    return candidates
  }

  /** Assign each CID to its best untried holder, spreading load among holders of the same tier. */
  private plan (pending: CID[], candidates: Map<string, Candidate[]>, source: Candidate, tried: Map<string, string[]>): { assignments: Map<string, { holder: Candidate, cids: CID[] }>, unavailable: CID[] } {
    const assignments = new Map<string, { holder: Candidate, cids: CID[] }>()
    const unavailable: CID[] = []
    const usable = (holder: Candidate, done: string[] | undefined): boolean =>
      !this.dropped.has(holder.id) && (done == null || !done.includes(holder.id))

    for (const cid of pending) {
      const key = keyOf(cid)
      const done = tried.get(key)
      let choice: Candidate | undefined
      let choiceCost = Infinity
      // the list is sorted best tier first: weigh load only among holders of the best usable tier
      for (const holder of candidates.get(key) ?? []) {
        if (!usable(holder, done)) continue
        if (choice != null && holder.rank !== choice.rank) break
        const cost = ((assignments.get(holder.id)?.cids.length ?? 0) + 1) * (holder.rtt + 1)
        if (cost < choiceCost) { choice = holder; choiceCost = cost }
      }
      if (choice == null && usable(source, done)) choice = source
      if (choice == null) {
        unavailable.push(cid)
        continue
      }
      if (done == null) tried.set(key, [choice.id])
      else done.push(choice.id)
      let assignment = assignments.get(choice.id)
      if (assignment == null) {
        assignment = { holder: choice, cids: [] }
        assignments.set(choice.id, assignment)
      }
      assignment.cids.push(cid)
    }
    return { assignments, unavailable }
  }

  /** Fetch from one holder in slices; a holder that fails is dropped for the rest of the migration. */
  private async fetchFrom (holder: Holder, cids: CID[], opts: FetchPlan, received: Set<string>): Promise<void> {
    const id = holder.peerId.toString()
    const tier = this.tierOf(holder)
    const crossSite = holder.site !== this.deps.site
    const slice = this.options.slicePages ?? DEFAULT_SLICE_PAGES
    const slices: CID[][] = []
    for (let i = 0; i < cids.length; i += slice) slices.push(cids.slice(i, i + slice))

    const worker = async (): Promise<void> => {
      while (slices.length > 0 && !this.dropped.has(id)) {
        const next = slices.shift()!
        await this.drain(holder, opts.sink, async (take) => {
          const refs = crossSite && tier === 'source' && opts.refs != null && opts.refs.size > 0 ? await this.references(next, opts.refs) : undefined
          const result = await this.deps.fetch(holder.peerId, next, {
            compress: crossSite,
            refs,
            signal: this.options.signal,
            onBlock: (cid, bytes) => {
              take(cid, bytes)
              received.add(keyOf(cid))
              this.account(tier, opts.kind, bytes.byteLength)
            }
          })
          this.accountWire(tier, opts.kind, result.wireBytes, crossSite)
          this.delta.pages += result.deltaPages ?? 0
        })
        this.progress('pages')
      }
    }
    await Promise.all(Array.from({ length: DEFAULT_FETCHES_PER_HOLDER }, worker))
  }

  /**
   * Reference pages for pages the source sends across sites: the page in the same slot of the
   * basis image, read from the own store or a same-site peer, so the source can send each page
   * compressed against it.
   */
  private async references (cids: CID[], refOf: Map<string, CID>): Promise<Array<Page | undefined> | undefined> {
    const wanted = new Map<string, CID>()
    for (const cid of cids) {
      const ref = refOf.get(keyOf(cid))
      if (ref != null) wanted.set(keyOf(ref), ref)
    }
    if (wanted.size === 0) return undefined
    const bytesOf = new Map<string, Uint8Array>()
    const refs = [...wanted.values()]
    for await (const { cid, bytes } of this.deps.store.getMany(refs, { signal: this.options.signal })) {
      if (bytes != null) bytesOf.set(keyOf(cid), bytes)
    }
    const absent = refs.filter(cid => !bytesOf.has(keyOf(cid)))
    if (absent.length > 0) await this.fromSite(absent, async (cid, bytes) => { bytesOf.set(keyOf(cid), bytes) })
    this.delta.references += bytesOf.size
    return cids.map(cid => {
      const ref = refOf.get(keyOf(cid))
      const bytes = ref == null ? undefined : bytesOf.get(keyOf(ref))
      return bytes == null ? undefined : { cid: ref!, bytes }
    })
  }

  private account (tier: Tier, kind: 'pages' | 'manifest', bytes: number): void {
    if (kind === 'manifest') {
      this.manifestFigures.fetched++
      return
    }
    this.tiers[tier].pages++
    this.tiers[tier].bytes += bytes
    this.slotsDone++
  }

  private accountWire (tier: Tier, kind: 'pages' | 'manifest', wireBytes: number, crossSite: boolean): void {
    if (kind === 'manifest') this.manifestFigures.wireBytes += wireBytes
    else this.tiers[tier].wireBytes += wireBytes
    if (crossSite) this.wanBytes += wireBytes
  }

  private tierOf (holder: Holder): Tier {
    if (holder.peerId.equals(this.options.source)) return 'source'
    return holder.site === this.deps.site ? 'site' : 'remote'
  }

  private rtt (holder: Holder): number {
    return holder.rttMs ?? DEFAULT_UNKNOWN_RTT
  }

  private signal (timeout: number): AbortSignal {
    const timer = AbortSignal.timeout(timeout)
    return this.options.signal == null ? timer : AbortSignal.any([timer, this.options.signal])
  }

  private progress (phase: 'manifest' | 'pages' | 'export' | 'done'): void {
    this.options.onProgress?.({
      phase,
      // pages fetched while rebuilding the manifest are done before the page walk counts them again
      done: phase === 'done' ? this.totalSlots : Math.min(Math.max(this.slotsDone, this.prefetched.slots), this.totalSlots),
      total: this.totalSlots,
      tiers: this.tiers
    })
  }
}

