/**
 * The page exchange service: serves pages from a PageStore and fetches verified pages
 * from peers over `/memfabric/pages/1.0.0` (wire format in codec.ts).
 */
import { zstdCompressSync, zstdDecompressSync, constants as zlibConstants } from 'node:zlib'
import type { Uint8ArrayList } from 'uint8arraylist'
import { logger } from '@libp2p/logger'
import { lpStream } from '@libp2p/utils'
import type { LengthPrefixedStream } from '@libp2p/utils'
import { isPeerId } from '@libp2p/interface'
import type { AbortOptions, Connection, PeerId, Startable, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'
import { PAGE_SIZE } from '../../store/constants.ts'
import { digestToCid, isPageCid, pageCid, sha256Digest, verifyPage } from '../../store/page.ts'
import type { Page, PageStore } from '../../store/index.ts'
import {
  DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CIDS_PER_REQUEST, DEFAULT_MAX_INBOUND_STREAMS,
  DEFAULT_MAX_INFLIGHT_PER_STREAM, DEFAULT_MAX_OUTBOUND_STREAMS, DEFAULT_MAX_REQUEST_FRAME_LENGTH,
  DEFAULT_MAX_RESPONSE_FRAME_LENGTH, DEFAULT_MAX_STREAMS_PER_PEER, DEFAULT_RESPONSE_FRAME_BYTES,
  DEFAULT_SINK_BATCH, DEFAULT_STREAMS, DEFAULT_WINDOW, DEFAULT_ZSTD_LEVEL, DELTA_MAX_BYTES, PAGES_PROTOCOL,
  PREFIX_BYTES, RESPONSE_ENTRY_HEADER, RESPONSE_FRAME_HEADER, ZSTD_MIN_SAVING
} from './constants.ts'
import {
  decodeAnyRequest, decodeResponse, deflateResponse, encodePrefixRequest, encodeRequest, encodeResponseList, encodeThinRequest, PAGE_DELTA,
  decodePatchFrame, encodePatchRequest, encodePatchResponse, isPatchRequest, isPrefixRequest, isThinRequest, PAGE_MISSING, PAGE_RAW
} from './codec.ts'
import type { AnyRequest, Compression, ManifestPatch, PageEntry, PageRequest, PatchRequest, ThinRequest } from './codec.ts'
import { decodeThinFrame, encodeThinAbsent, encodeThinFrames, THIN_ENTRY_BYTES } from './codec/thin-frames.ts'
import type { ThinManifest } from './codec/thin-frames.ts'
import {
  InvalidPageCidError, NotStartedError, PeerMisbehavedError, PeerNotAllowedError, TooManyStreamsError, TransferTimeoutError
} from './errors.ts'
import { Slots, varintLength, withIdleTimeout } from './timeout.ts'
import type {
  FetchOptions, FetchResult, PageCounters, PageExchangeComponents, PageExchangeInit
} from './index.ts'

const log = logger('memfabric:pages')

const ZERO_PAGE_CID = pageCid(new Uint8Array(PAGE_SIZE))
const MAX_REQUEST_ID = 0xffffffff

const MISSING_ENTRY: PageEntry = { kind: PAGE_MISSING, bytes: new Uint8Array(0) }

const ZERO_DIGEST = ZERO_PAGE_CID.multihash.digest

function isZeroCid (cid: CID): boolean {
  const d = cid.multihash.digest
  if (d.byteLength !== ZERO_DIGEST.byteLength || d[0] !== ZERO_DIGEST[0]) {
    return false // the common case, decided without allocating
  }
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength).equals(ZERO_DIGEST)
}

function peerKey (peer: PeerId | Multiaddr): string {
  if (isPeerId(peer)) {
    return peer.toString()
  }
  return peer.getComponents().findLast(c => c.name === 'p2p')?.value ?? peer.toString()
}

function newCounters (): PageCounters {
  return { pagesServed: 0, bytesServed: 0, wireBytesServed: 0, missingServed: 0, requestsServed: 0, pagesFetched: 0, bytesFetched: 0, wireBytesFetched: 0, missingFetched: 0, misbehaved: 0, timeouts: 0 }
}

/**
 * CIDs of one request, with the reference page (if any) the server may compress each against;
 * or, for a fetch by prefix, the prefixes (then `cids` is empty).
 */
interface Batch {
  cids: CID[]
  refs?: Array<Page | undefined>
  prefixes?: Uint8Array
}

function batchSize (batch: Batch): number {
  return batch.prefixes != null ? batch.prefixes.byteLength / PREFIX_BYTES : batch.cids.length
}

/** Shared state of one `fetch` call: the batches still to ask for and what came back. */
interface FetchState {
  peer: string
  batches: Batch[]
  next: number
  result: FetchResult
  sinkBuffer: Page[]
  options: FetchOptions
  signal: AbortSignal
}

export class PageExchange implements Startable {
  readonly protocol = PAGES_PROTOCOL
  /** Totals over all peers. */
  readonly counters: PageCounters = newCounters()
  /** Counters per remote peer id (string). */
  readonly peerCounters = new Map<string, PageCounters>()

  private readonly components: PageExchangeComponents
  private readonly store: PageStore
  private readonly maxCids: number
  private readonly responseFrameBytes: number
  private readonly maxResponseFrameLength: number
  private readonly maxRequestFrameLength: number
  private readonly maxInflightPerStream: number
  private readonly maxStreamsPerPeer: number
  private readonly maxInboundStreams: number
  private readonly maxOutboundStreams: number
  private readonly idleTimeout: number
  private readonly window: number
  private readonly zstdLevel: number
  private readonly allowPeer?: (peer: PeerId) => boolean
  private readonly patch?: PageExchangeInit['patch']
  private readonly slots?: PageExchangeInit['slots']
  private readonly streams = new Set<Stream>()
  private readonly streamsPerPeer = new Map<string, number>()
  private nextId = 0
  private started = false
  /** Aborted by stop(): ends every pending read and store call of this service. */
  private shutdown = new AbortController()

  constructor (components: PageExchangeComponents, init: PageExchangeInit) {
    this.components = components
    this.store = init.store
    this.maxCids = init.maxCidsPerRequest ?? DEFAULT_MAX_CIDS_PER_REQUEST
    this.responseFrameBytes = init.responseFrameBytes ?? DEFAULT_RESPONSE_FRAME_BYTES
    this.maxResponseFrameLength = init.maxResponseFrameLength ?? DEFAULT_MAX_RESPONSE_FRAME_LENGTH
    this.maxRequestFrameLength = init.maxRequestFrameLength ?? DEFAULT_MAX_REQUEST_FRAME_LENGTH
    this.maxInflightPerStream = init.maxInflightPerStream ?? DEFAULT_MAX_INFLIGHT_PER_STREAM
    this.maxStreamsPerPeer = init.maxStreamsPerPeer ?? DEFAULT_MAX_STREAMS_PER_PEER
    this.maxInboundStreams = init.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS
    this.maxOutboundStreams = init.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS
    this.idleTimeout = init.idleTimeout ?? DEFAULT_IDLE_TIMEOUT
    this.window = init.window ?? DEFAULT_WINDOW
    this.zstdLevel = init.zstdLevel ?? DEFAULT_ZSTD_LEVEL
    this.allowPeer = init.allowPeer
    this.patch = init.patch
    this.slots = init.slots
  }

  readonly [Symbol.toStringTag] = '@memfabric/pages'

  isStarted (): boolean {
    return this.started
  }

  async start (): Promise<void> {
    if (this.started) {
      return
    }
    this.shutdown = new AbortController()
    await this.components.registrar.handle(this.protocol, (stream, connection) => this.onStream(stream, connection), {
      maxInboundStreams: this.maxInboundStreams,
      maxOutboundStreams: this.maxOutboundStreams
    })
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) {
      return
    }
    this.started = false
    this.shutdown.abort(new NotStartedError('page exchange stopped'))
    await this.components.registrar.unhandle(this.protocol)
    for (const stream of this.streams) {
      stream.abort(new NotStartedError('page exchange stopped'))
    }
    this.streams.clear()
  }

  private countersFor (peer: string): PageCounters {
    let c = this.peerCounters.get(peer)
    if (c == null) {
      c = newCounters()
      this.peerCounters.set(peer, c)
    }
    return c
  }

  private count (peer: string, field: keyof PageCounters, n: number): void {
    this.counters[field] += n
    this.countersFor(peer)[field] += n
  }

  // ---------------------------------------------------------------- server

  private onStream (stream: Stream, connection: Connection): void {
    const peer = connection.remotePeer.toString()
    if (this.allowPeer != null && !this.allowPeer(connection.remotePeer)) {
      log('peer %s is not on the allow-list, refusing its page stream', peer)
      stream.abort(new PeerNotAllowedError(`peer ${peer} may not fetch pages`))
      return
    }
    const open = this.streamsPerPeer.get(peer) ?? 0
    if (open >= this.maxStreamsPerPeer) {
      log('peer %s has %d page streams open, refusing another', peer, open)
      stream.abort(new TooManyStreamsError(`peer ${peer} has ${open} page streams open`))
      return
    }
    this.streamsPerPeer.set(peer, open + 1)
    this.streams.add(stream)
    this.serve(stream, peer)
      .catch(err => {
        log.error('serving %s failed - %e', peer, err)
        stream.abort(err)
      })
      .finally(() => {
        this.streams.delete(stream)
        const n = (this.streamsPerPeer.get(peer) ?? 1) - 1
        if (n <= 0) {
          this.streamsPerPeer.delete(peer)
        } else {
          this.streamsPerPeer.set(peer, n)
        }
      })
  }

  /** Answer requests from one stream until the client closes its end. */
  private async serve (stream: Stream, peer: string): Promise<void> {
    const lp = lpStream(stream, {
      maxDataLength: this.maxRequestFrameLength,
      // requests beyond our in-flight limit wait here; a client that floods past it is cut off
      maxBufferSize: Math.max(4 * 1024 * 1024, this.maxInflightPerStream * this.maxRequestFrameLength)
    })
    const controller = new AbortController()
    const onShutdown = (): void => { controller.abort(this.shutdown.signal.reason) }
    this.shutdown.signal.addEventListener('abort', onShutdown, { once: true })
    // a reset or a dropped connection stops the store reads and writes of pending answers
    const onClose = (): void => { controller.abort(new Error('stream closed before all answers were sent')) }
    stream.addEventListener('close', onClose, { once: true })
    const slots = new Slots(this.maxInflightPerStream)
    const pending = new Set<Promise<void>>()
    let failure: unknown

    try {
      while (true) {
        // back-pressure: do not take a request off the wire until we can work on it
        await slots.acquire()
        if (failure != null) {
          throw failure
        }
        const read = lp.read()
        let frame
        while (true) {
          try {
            frame = await withIdleTimeout(read, this.idleTimeout, () => new TransferTimeoutError(peer, this.idleTimeout), controller.signal)
            break
          } catch (err: any) {
            // a client waiting on our answers is not idle
            if (err instanceof TransferTimeoutError && slots.active > 1) {
              continue
            }
            if (err?.name === 'UnexpectedEOFError') {
              frame = undefined
              break
            }
            if (err instanceof TransferTimeoutError) {
              this.count(peer, 'timeouts', 1)
            }
            throw err
          }
        }
        if (frame == null) {
          slots.release()
          break
        }
        const req = decodeAnyRequest(frame, this.maxCids)
        const task = this.answerAny(lp, req, peer, controller.signal)
          .catch(err => {
            failure ??= err
            controller.abort(err)
            stream.abort(err)
          })
          .finally(() => {
            slots.release()
            pending.delete(task)
          })
        pending.add(task)
      }
      await Promise.all(pending)
      if (failure != null) {
        throw failure
      }
      await stream.close({ signal: AbortSignal.timeout(this.idleTimeout) })
    } finally {
      stream.removeEventListener('close', onClose)
      this.shutdown.signal.removeEventListener('abort', onShutdown)
      controller.abort()
    }
  }

  /**
   * Stream one request's pages back in order, batched into frames. A frame is a list of views
   * of the store's page bytes: copying pages into a fresh flat frame measured ~2.5 CPU-s/GB
   * more on this VM (new memory costs page faults), more than noise spends on the extra
   * pieces. Counters are bumped once per frame, not per page.
   */
  private async answer (lp: LengthPrefixedStream<Stream>, req: PageRequest, peer: string, signal: AbortSignal): Promise<void> {
    let entries: PageEntry[] = []
    let frameSize = RESPONSE_FRAME_HEADER
    let start = 0
    let seen = 0
    let pages = 0
    let bytesServed = 0
    let missing = 0

    const flush = async (last: boolean): Promise<void> => {
      let frame: Uint8Array | Uint8ArrayList = encodeResponseList({ id: req.id, start, last, entries })
      if (req.compress === 'zstd') {
        frame = await deflateResponse(frame.subarray(), this.zstdLevel, ZSTD_MIN_SAVING) ?? frame
      }
      start += entries.length
      entries = []
      frameSize = RESPONSE_FRAME_HEADER
      this.count(peer, 'pagesServed', pages)
      this.count(peer, 'bytesServed', bytesServed)
      this.count(peer, 'missingServed', missing)
      this.count(peer, 'wireBytesServed', frame.byteLength + varintLength(frame.byteLength))
      pages = bytesServed = missing = 0
      await lp.write(frame, { signal: AbortSignal.any([signal, AbortSignal.timeout(this.idleTimeout)]) })
    }

    const refs = req.refs != null ? await this.referencePages(req.refs, signal) : undefined
    let index = 0
    for await (const { cid, bytes } of this.store.getMany(req.cids, { signal })) {
      let entry: PageEntry
      const ref = refs?.[index++]
      // zero pages are implicit and never sent; a page not held is reported missing
      if (bytes == null || isZeroCid(cid)) {
        entry = MISSING_ENTRY
        missing++
      } else {
        entry = (ref != null ? this.delta(bytes, ref) : undefined) ?? { kind: PAGE_RAW, bytes }
        pages++
        bytesServed += bytes.byteLength
      }
      if (entries.length > 0 && frameSize + RESPONSE_ENTRY_HEADER + entry.bytes.byteLength > this.responseFrameBytes) {
        await flush(false)
      }
      entries.push(entry)
      frameSize += RESPONSE_ENTRY_HEADER + entry.bytes.byteLength
      seen++
    }
    if (seen !== req.cids.length) {
      throw new Error(`store answered ${seen} of ${req.cids.length} pages`)
    }
    await flush(true)
    this.count(peer, 'requestsServed', 1)
  }

  private async answerAny (lp: LengthPrefixedStream<Stream>, req: AnyRequest, peer: string, signal: AbortSignal): Promise<void> {
    if (isPatchRequest(req)) {
      await this.answerPatch(lp, req, signal)
    } else if (isThinRequest(req)) {
      await this.answerThin(lp, req, signal)
    } else if (isPrefixRequest(req)) {
      const cids = await this.resolvePrefixes(req.prefixes, signal)
      await this.answer(lp, req.compress == null ? { id: req.id, cids } : { id: req.id, cids, compress: req.compress }, peer, signal)
    } else {
      await this.answer(lp, req, peer, signal)
    }
  }

  /** The CID of a held page per prefix; the zero page's CID (answered as missing) where none is held. */
  private async resolvePrefixes (prefixes: Uint8Array, signal: AbortSignal): Promise<CID[]> {
    const digests = await this.store.resolvePrefixes?.(prefixes, { signal })
    const cids: CID[] = new Array(prefixes.byteLength / PREFIX_BYTES)
    for (let i = 0; i < cids.length; i++) {
      const digest = digests?.[i]
      cids[i] = digest == null ? ZERO_PAGE_CID : digestToCid(digest)
    }
    return cids
  }

  /** The bytes of the reference pages this store holds (undefined for the rest). */
  private async referencePages (refs: Array<CID | null>, signal: AbortSignal): Promise<Array<Uint8Array | undefined>> {
    const out: Array<Uint8Array | undefined> = new Array(refs.length)
    const asked: number[] = []
    refs.forEach((ref, i) => { if (ref != null && !isZeroCid(ref)) asked.push(i) })
    if (asked.length === 0) {
      return out
    }
    let j = 0
    for await (const { bytes } of this.store.getMany(asked.map(i => refs[i]!), { signal })) {
      out[asked[j++]] = bytes
    }
    return out
  }

  /** The page compressed against a page the client holds, when that is small enough to pay. */
  private delta (page: Uint8Array, ref: Uint8Array): PageEntry | undefined {
    const bytes = zstdCompressSync(page, { dictionary: ref, params: { [zlibConstants.ZSTD_c_compressionLevel]: this.zstdLevel } } as any)
    return bytes.byteLength <= DELTA_MAX_BYTES ? { kind: PAGE_DELTA, bytes } : undefined
  }

  /** Answer how an image differs from its basis (one frame saying "no basis" without one). */
  private async answerPatch (lp: LengthPrefixedStream<Stream>, req: PatchRequest, signal: AbortSignal): Promise<void> {
    const patch = await this.patch?.(req.patch, { signal })
    for (const frame of encodePatchResponse(req.id, patch)) {
      await lp.write(frame, { signal: AbortSignal.any([signal, AbortSignal.timeout(this.idleTimeout)]) })
    }
  }

  /** Send image `thin`'s slots as a thin manifest (one frame saying "not held" when it is not). */
  private async answerThin (lp: LengthPrefixedStream<Stream>, req: ThinRequest, signal: AbortSignal): Promise<void> {
    const options = (): { signal: AbortSignal } => ({ signal: AbortSignal.any([signal, AbortSignal.timeout(this.idleTimeout)]) })
    let sent = 0
    try {
      if (this.slots == null) throw new Error('no manifests served')
      for await (const frame of encodeThinFrames(req.id, this.slots(req.thin, { signal }), this.zstdLevel)) {
        await lp.write(frame, options())
        sent++
      }
    } catch (err: any) {
      if (sent > 0 || signal.aborted) throw err
      log('thin manifest of %c not served - %e', req.thin, err)
      await lp.write(encodeThinAbsent(req.id), options())
    }
  }

  // ---------------------------------------------------------------- client

  /**
   * Send one request on a new stream, decode each response frame (`what` names it in errors)
   * and hand it to `onPart` until that returns true (the last frame). Returns the bytes read
   * off the stream.
   */
  private async exchange<T> (peer: PeerId | Multiaddr, request: Uint8Array, options: AbortOptions, what: string, decode: (frame: Uint8ArrayList) => T, onPart: (part: T, misbehaved: (reason: string, cause?: unknown) => PeerMisbehavedError) => boolean): Promise<number> {
    if (!this.started) {
      throw new NotStartedError()
    }
    const remote = peerKey(peer)
    const signal = AbortSignal.any(options.signal == null ? [this.shutdown.signal] : [options.signal, this.shutdown.signal])
    const stream = await this.components.connectionManager.openStream(peer, this.protocol, { signal })
    this.streams.add(stream)
    const misbehaved = (reason: string, cause?: unknown): PeerMisbehavedError => {
      this.count(remote, 'misbehaved', 1)
      return new PeerMisbehavedError(remote, reason, cause == null ? undefined : { cause })
    }
    try {
      const lp = lpStream(stream, { maxDataLength: this.maxResponseFrameLength })
      await lp.write(request, { signal })
      let wireBytes = 0
      while (true) {
        let frame
        try {
          frame = await withIdleTimeout(lp.read(), this.idleTimeout, () => new TransferTimeoutError(remote, this.idleTimeout), signal)
        } catch (err: any) {
          if (err instanceof TransferTimeoutError || signal.aborted) throw err
          throw misbehaved(`answer ended early: ${err.message}`, err)
        }
        wireBytes += frame.byteLength + varintLength(frame.byteLength)
        let part: T
        try {
          part = decode(frame)
        } catch (err: any) {
          throw misbehaved(`bad ${what} frame: ${err.message}`, err)
        }
        if (onPart(part, misbehaved)) break
      }
      await stream.close({ signal: AbortSignal.any([signal, AbortSignal.timeout(this.idleTimeout)]) })
      return wireBytes
    } catch (err: any) {
      stream.abort(err)
      throw err
    } finally {
      this.streams.delete(stream)
    }
  }

  private takeId (): number {
    const id = this.nextId
    this.nextId = this.nextId === MAX_REQUEST_ID ? 0 : this.nextId + 1
    return id
  }

  /**
   * Ask `peer` for image `root`'s slots as a thin manifest (zero runs and digest prefixes);
   * undefined when it does not hold the image. Also returns the bytes read off the stream.
   * `maxEntries` bounds what is accepted (an image of n slots has at most n entries).
   */
  async manifestThin (peer: PeerId | Multiaddr, root: CID, options: AbortOptions & { maxEntries?: number } = {}): Promise<{ thin?: ThinManifest, wireBytes: number }> {
    const id = this.takeId()
    const parts: Uint8Array[] = []
    let count = 0
    let absent = false
    const wireBytes = await this.exchange(peer, encodeThinRequest({ id, thin: root }), options, 'thin-manifest', decodeThinFrame, (part, misbehaved) => {
      if (part.id !== id || (part.absent && parts.length > 0)) {
        throw misbehaved('thin-manifest frames disagree')
      }
      absent = part.absent
      parts.push(part.entries)
      count += part.count
      if (count > (options.maxEntries ?? Infinity)) {
        throw misbehaved(`thin manifest holds more than ${options.maxEntries} entries`)
      }
      return part.last
    })
    if (absent) {
      return { wireBytes }
    }
    const entries = new Uint8Array(count * THIN_ENTRY_BYTES)
    let at = 0
    for (const part of parts) {
      entries.set(part, at)
      at += part.byteLength
    }
    return { thin: { entries, count }, wireBytes }
  }

  /**
   * Ask `peer` how image `root` differs from the older image it would use as basis;
   * undefined when it has none. Also returns the bytes read off the stream.
   */
  async manifestPatch (peer: PeerId | Multiaddr, root: CID, options: AbortOptions = {}): Promise<{ patch?: ManifestPatch, wireBytes: number }> {
    const id = this.takeId()
    let basis: CID | undefined
    const slots: number[] = []
    const kinds: number[] = []
    const digests: Uint8Array[] = []
    const wireBytes = await this.exchange(peer, encodePatchRequest({ id, patch: root }), options, 'manifest-patch', decodePatchFrame, (part, misbehaved) => {
      if (part.id !== id || (slots.length > 0 && (part.basis == null || !part.basis.equals(basis)))) {
        throw misbehaved('manifest-patch frames disagree')
      }
      basis ??= part.basis
      for (let i = 0; i < part.slots.length; i++) {
        if (slots.length > 0 && part.slots[i] <= slots[slots.length - 1]) throw misbehaved('manifest-patch slots do not ascend')
        slots.push(part.slots[i])
        kinds.push(part.kinds[i])
        digests.push(part.digests[i])
      }
      return part.last
    })
    if (basis == null) {
      return { wireBytes }
    }
    const flat = new Uint8Array(slots.length * 32)
    digests.forEach((d, i) => { if (d != null) flat.set(d, i * 32) })
    return { patch: { basis, slots: Uint32Array.from(slots), kinds: Uint8Array.from(kinds), digests: flat }, wireBytes }
  }

  /**
   * Fetch pages from `peer`, verifying each against its CID on arrival. Resolves once every
   * CID was answered (received or missing); throws PeerMisbehavedError / TransferTimeoutError
   * on the first fault, after delivering the pages verified before it.
   */
  async fetch (peer: PeerId | Multiaddr, cids: CID[], options: FetchOptions = {}): Promise<FetchResult> {
    if (!this.started) {
      throw new NotStartedError()
    }
    const result: FetchResult = { received: [], missing: [], bytes: 0, wireBytes: 0, deltaPages: 0 }
    const ask: CID[] = []
    const askRefs: Array<Page | undefined> = []
    const refs = options.compress != null ? options.refs : undefined
    if (refs != null && refs.length !== cids.length) {
      throw new TypeError('options.refs must hold one entry per cid')
    }
    for (const [i, cid] of cids.entries()) {
      if (!isPageCid(cid)) {
        throw new InvalidPageCidError(`${cid} cannot name a page`)
      }
      if (isZeroCid(cid)) {
        // implicit: never requested, delivered locally
        const zero = new Uint8Array(PAGE_SIZE)
        options.onPage?.(cid, zero)
        result.received.push(cid)
        continue
      }
      ask.push(cid)
      askRefs.push(refs?.[i])
    }
    const batches: Batch[] = []
    for (let i = 0; i < ask.length; i += this.maxCids) {
      const batch: Batch = { cids: ask.slice(i, i + this.maxCids) }
      const batchRefs = askRefs.slice(i, i + this.maxCids)
      if (batchRefs.some(r => r != null)) batch.refs = batchRefs
      batches.push(batch)
    }
    return this.fetchBatches(peer, batches, result, options)
  }

  /**
   * Fetch pages from `peer` by digest prefix (PREFIX_BYTES bytes each, concatenated). Each page
   * is hashed on arrival and kept only if its digest starts with the prefix asked; `onPage` gets
   * its CID. Prefixes the peer holds no page for are skipped (`missing` stays empty: compare
   * `received` with what was asked).
   */
  async fetchByPrefix (peer: PeerId | Multiaddr, prefixes: Uint8Array, options: Omit<FetchOptions, 'refs'> = {}): Promise<FetchResult> {
    if (!this.started) {
      throw new NotStartedError()
    }
    if (prefixes.byteLength % PREFIX_BYTES !== 0) {
      throw new TypeError(`prefixes must be ${PREFIX_BYTES} bytes each`)
    }
    const batches: Batch[] = []
    const step = this.maxCids * PREFIX_BYTES
    for (let at = 0; at < prefixes.byteLength; at += step) {
      batches.push({ cids: [], prefixes: prefixes.subarray(at, at + step) })
    }
    return this.fetchBatches(peer, batches, { received: [], missing: [], bytes: 0, wireBytes: 0, deltaPages: 0 }, options)
  }

  private async fetchBatches (peer: PeerId | Multiaddr, batches: Batch[], result: FetchResult, options: FetchOptions): Promise<FetchResult> {
    if (batches.length === 0) {
      return result
    }

    // one failing stream stops its siblings
    const controller = new AbortController()
    const signal = AbortSignal.any(options.signal == null ? [controller.signal, this.shutdown.signal] : [options.signal, controller.signal, this.shutdown.signal])
    const state: FetchState = { peer: peerKey(peer), batches, next: 0, result, sinkBuffer: [], options, signal }
    const streams = Math.max(1, Math.min(options.streams ?? DEFAULT_STREAMS, batches.length))

    const workers: Array<Promise<void>> = []
    for (let i = 0; i < streams; i++) {
      workers.push(this.fetchOn(peer, state).catch(err => {
        controller.abort(err)
        throw err
      }))
    }
    const settled = await Promise.allSettled(workers)
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected')
    if (failed != null) {
      // surface the root cause, not a sibling's "aborted"
      throw controller.signal.reason ?? failed.reason
    }
    await this.flushSink(state)
    return result
  }

  private async flushSink (state: FetchState): Promise<void> {
    const sink = state.options.sink
    if (sink == null || state.sinkBuffer.length === 0) {
      return
    }
    const pages = state.sinkBuffer
    state.sinkBuffer = []
    await sink.putMany(pages, { signal: state.signal })
  }

  /** One stream's share of a fetch: keep `window` requests in flight until no batch is left. */
  private async fetchOn (peer: PeerId | Multiaddr, state: FetchState): Promise<void> {
    const { options, signal, result } = state
    const window = options.window ?? this.window
    const idleTimeout = options.idleTimeout ?? this.idleTimeout
    const sinkBatch = options.sinkBatch ?? DEFAULT_SINK_BATCH
    const compress: Compression | undefined = options.compress

    const stream = await this.components.connectionManager.openStream(peer, this.protocol, { signal })
    const remote = state.peer
    this.streams.add(stream)
    const lp = lpStream(stream, {
      maxDataLength: this.maxResponseFrameLength,
      // we never ask for more than `window` requests' worth of frames, so this bounds memory
      maxBufferSize: (window + 1) * (this.maxResponseFrameLength + 8)
    })
    const inflight = new Map<number, Batch & { pos: number }>()
    const misbehaved = (reason: string, cause?: unknown): PeerMisbehavedError => {
      this.count(remote, 'misbehaved', 1)
      return new PeerMisbehavedError(remote, reason, cause == null ? undefined : { cause })
    }

    const sendMore = async (): Promise<void> => {
      const frames: Uint8Array[] = []
      while (inflight.size < window && state.next < state.batches.length) {
        const batch = state.batches[state.next++]
        const id = this.nextId
        this.nextId = this.nextId === MAX_REQUEST_ID ? 0 : this.nextId + 1
        inflight.set(id, { ...batch, pos: 0 })
        const { cids, refs, prefixes } = batch
        if (prefixes != null) frames.push(encodePrefixRequest(compress == null ? { id, prefixes } : { id, prefixes, compress }))
        else frames.push(encodeRequest(compress == null ? { id, cids } : refs == null ? { id, cids, compress } : { id, cids, compress, refs: refs.map(r => r?.cid ?? null) }))
      }
      if (frames.length > 0) {
        await lp.writeV(frames, { signal })
      }
    }

    try {
      await sendMore()
      while (inflight.size > 0) {
        let frame
        try {
          frame = await withIdleTimeout(lp.read(), idleTimeout, () => new TransferTimeoutError(remote, idleTimeout), signal)
        } catch (err: any) {
          if (err instanceof TransferTimeoutError) {
            this.count(remote, 'timeouts', 1)
            throw err
          }
          if (signal.aborted) {
            throw signal.reason
          }
          if (err?.code === 'ERR_MSG_DATA_TOO_LONG' || err?.code === 'ERR_MSG_LENGTH_TOO_LONG' || err?.code === 'ERR_INVALID_MSG_LENGTH') {
            throw misbehaved(`oversize or invalid frame length: ${err.message}`, err)
          }
          throw misbehaved(`stream ended with ${inflight.size} requests unanswered: ${err?.message}`, err)
        }
        const wire = frame.byteLength + varintLength(frame.byteLength)
        result.wireBytes += wire
        this.count(remote, 'wireBytesFetched', wire)

        let res
        try {
          res = decodeResponse(frame, this.maxCids)
        } catch (err: any) {
          throw misbehaved(`undecodable frame: ${err.message}`, err)
        }
        const req = inflight.get(res.id)
        if (req == null) {
          throw misbehaved(`response for unknown request id ${res.id}`)
        }
        const size = batchSize(req)
        if (res.start !== req.pos || res.entries.length === 0 || req.pos + res.entries.length > size) {
          throw misbehaved(`response frame out of order for request ${res.id} (start ${res.start}, ${res.entries.length} entries, expected start ${req.pos} of ${size})`)
        }
        let pages = 0
        let bytesFetched = 0
        let missing = 0
        // counted per frame, also when a page of it fails (the pages before it were delivered)
        try {
          for (const entry of res.entries) {
            let cid = req.cids[req.pos]
            if (entry.kind === PAGE_MISSING) {
              req.pos++
              if (cid != null) result.missing.push(cid)
              missing++
              continue
            }
            let bytes = entry.bytes
            if (entry.kind === PAGE_DELTA) {
              const ref = req.refs?.[req.pos]
              if (ref == null) {
                throw misbehaved(`page ${cid} compressed against a reference that was not offered`)
              }
              try {
                bytes = zstdDecompressSync(entry.bytes, { dictionary: ref.bytes, maxOutputLength: PAGE_SIZE } as any)
                result.deltaPages++
              } catch (err: any) {
                throw misbehaved(`page ${cid} does not decompress against its reference: ${err.message}`, err)
              }
            }
            if (req.prefixes != null) {
              const digest = sha256Digest(bytes)
              const at = req.pos * PREFIX_BYTES
              if (bytes.byteLength > PAGE_SIZE || Buffer.compare(digest.subarray(0, PREFIX_BYTES), req.prefixes.subarray(at, at + PREFIX_BYTES)) !== 0) {
                throw misbehaved(`page for prefix ${Buffer.from(req.prefixes.subarray(at, at + PREFIX_BYTES)).toString('hex')} has another digest`)
              }
              cid = digestToCid(digest)
            } else if (!verifyPage(cid, bytes)) {
              throw misbehaved(`page ${cid} fails verification`)
            }
            req.pos++
            result.received.push(cid)
            result.bytes += bytes.byteLength
            pages++
            bytesFetched += bytes.byteLength
            options.onPage?.(cid, bytes)
            if (options.sink != null) {
              state.sinkBuffer.push({ cid, bytes })
            }
          }
        } finally {
          this.count(remote, 'pagesFetched', pages)
          this.count(remote, 'bytesFetched', bytesFetched)
          this.count(remote, 'missingFetched', missing)
        }
        if (res.last !== (req.pos === size)) {
          throw misbehaved(`request ${res.id} ${res.last ? 'ended early' : 'not ended after its last page'}`)
        }
        if (res.last) {
          inflight.delete(res.id)
          await sendMore()
        }
        if (state.sinkBuffer.length >= sinkBatch) {
          await this.flushSink(state)
        }
      }
      await stream.close({ signal: AbortSignal.any([signal, AbortSignal.timeout(idleTimeout)]) })
    } catch (err: any) {
      stream.abort(err)
      throw err
    } finally {
      this.streams.delete(stream)
    }
  }
}
