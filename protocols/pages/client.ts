/**
 * Client side of page requests: fetch pages by CID (optionally offering similar pages as
 * references) or by digest prefix, verified on arrival, over one or more streams with
 * `window` requests in flight on each.
 */
import { zstdDecompressSync } from 'node:zlib'
import { lpStream } from '@libp2p/utils'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'
import { PAGE_SIZE } from '../../store/constants.ts'
import { digestToCid, isPageCid, sha256Digest, verifyPage } from '../../store/page.ts'
import type { Page } from '../../store/index.ts'
import { frameSignal, readAnswer } from '../shared/frame-timeout.ts'
import { misbehavedFor } from '../shared/misbehaved.ts'
import type { Misbehaved } from '../shared/misbehaved.ts'
import type { OpenStreams } from '../shared/open-streams.ts'
import { peerKey } from '../shared/peer-key.ts'
import type { RequestIds } from '../shared/request-ids.ts'
import { wireLength } from '../shared/varint-length.ts'
import { DEFAULT_SINK_BATCH, DEFAULT_STREAMS, PREFIX_BYTES } from './constants.ts'
import { decodeHeldResponse, decodeResponse, encodePrefixRequest, encodeRequest, isHeldFrame, PAGE_DELTA, PAGE_MISSING } from './codec.ts'
import type { Compression, PageEntry } from './codec.ts'
import type { Uint8ArrayList } from 'uint8arraylist'
import type { Count } from './counters.ts'
import { InvalidPageCidError, NotStartedError } from './errors.ts'
import type { FetchOptions, FetchResult, PageExchangeComponents } from './index.ts'
import { isZeroCid } from './zero-page.ts'

/** What the clients share with the service. */
export interface ClientInit {
  protocol: string
  connectionManager: PageExchangeComponents['connectionManager']
  /** The service's open streams (aborted by its stop()). */
  streams: Pick<OpenStreams, 'add' | 'delete'>
  /** One id sequence for every request of the service. */
  ids: RequestIds
  count: Count
  isStarted(): boolean
  /** The service's shutdown signal (a new one on each start). */
  shutdown(): AbortSignal
  maxCids: number
  maxResponseFrameLength: number
  window: number
  idleTimeout: number
}

/**
 * CIDs of one request, with the reference page (if any) the server may compress each against;
 * or, for a fetch by prefix, the prefixes (then `cids` is empty).
 */
interface Batch {
  cids: CID[]
  refs?: Array<Page | undefined>
  prefixes?: Uint8Array
  /** Ask only which prefixes are held; the answer's bits go to the fetch's `held` from `offset`. */
  held?: { offset: number }
}

/** A batch asked for, and how many of its entries came back. */
type Inflight = Batch & { pos: number }

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
  /** For a held query: bit i set = prefix i of the call held. */
  held?: Uint8Array
}

function isLengthError (err: any): boolean {
  return err?.code === 'ERR_MSG_DATA_TOO_LONG' || err?.code === 'ERR_MSG_LENGTH_TOO_LONG' || err?.code === 'ERR_INVALID_MSG_LENGTH'
}

function emptyResult (): FetchResult {
  return { received: [], missing: [], bytes: 0, wireBytes: 0, deltaPages: 0 }
}

export class PageClient {
  private readonly init: ClientInit

  constructor (init: ClientInit) {
    this.init = init
  }

  /** See `PageExchange.fetch`. */
  async fetch (peer: PeerId | Multiaddr, cids: CID[], options: FetchOptions = {}): Promise<FetchResult> {
    if (!this.init.isStarted()) {
      throw new NotStartedError()
    }
    const { maxCids } = this.init
    const result = emptyResult()
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
    for (let i = 0; i < ask.length; i += maxCids) {
      const batch: Batch = { cids: ask.slice(i, i + maxCids) }
      const batchRefs = askRefs.slice(i, i + maxCids)
      if (batchRefs.some(r => r != null)) batch.refs = batchRefs
      batches.push(batch)
    }
    return this.fetchBatches(peer, batches, result, options)
  }

  /** See `PageExchange.fetchByPrefix`. */
  async fetchByPrefix (peer: PeerId | Multiaddr, prefixes: Uint8Array, options: Omit<FetchOptions, 'refs'> = {}): Promise<FetchResult> {
    if (!this.init.isStarted()) {
      throw new NotStartedError()
    }
    if (prefixes.byteLength % PREFIX_BYTES !== 0) {
      throw new TypeError(`prefixes must be ${PREFIX_BYTES} bytes each`)
    }
    const batches: Batch[] = []
    const step = this.init.maxCids * PREFIX_BYTES
    for (let at = 0; at < prefixes.byteLength; at += step) {
      batches.push({ cids: [], prefixes: prefixes.subarray(at, at + step) })
    }
    return this.fetchBatches(peer, batches, emptyResult(), options)
  }

  /**
   * See `PageExchange.heldByPrefix`: which of `prefixes` (PREFIX_BYTES each) `peer` holds a
   * page for, bit i (LSB first in byte i / 8) for prefix i; no pages travel.
   */
  async heldByPrefix (peer: PeerId | Multiaddr, prefixes: Uint8Array, options: Pick<FetchOptions, 'signal' | 'idleTimeout'> = {}): Promise<{ held: Uint8Array, wireBytes: number }> {
    if (!this.init.isStarted()) {
      throw new NotStartedError()
    }
    if (prefixes.byteLength % PREFIX_BYTES !== 0) {
      throw new TypeError(`prefixes must be ${PREFIX_BYTES} bytes each`)
    }
    const count = prefixes.byteLength / PREFIX_BYTES
    const batches: Batch[] = []
    const step = this.init.maxCids * PREFIX_BYTES
    for (let at = 0; at < prefixes.byteLength; at += step) {
      batches.push({ cids: [], prefixes: prefixes.subarray(at, at + step), held: { offset: at / PREFIX_BYTES } })
    }
    const held = new Uint8Array(Math.ceil(count / 8))
    const result = await this.fetchBatches(peer, batches, emptyResult(), options, held)
    return { held, wireBytes: result.wireBytes }
  }

  private async fetchBatches (peer: PeerId | Multiaddr, batches: Batch[], result: FetchResult, options: FetchOptions, held?: Uint8Array): Promise<FetchResult> {
    if (batches.length === 0) {
      return result
    }

    // one failing stream stops its siblings
    const controller = new AbortController()
    const shutdown = this.init.shutdown()
    const signal = AbortSignal.any(options.signal == null ? [controller.signal, shutdown] : [options.signal, controller.signal, shutdown])
    const state: FetchState = { peer: peerKey(peer), batches, next: 0, result, sinkBuffer: [], options, signal, held }
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
    const { count, ids, maxCids, maxResponseFrameLength } = this.init
    const window = options.window ?? this.init.window
    const idleTimeout = options.idleTimeout ?? this.init.idleTimeout
    const sinkBatch = options.sinkBatch ?? DEFAULT_SINK_BATCH
    const compress: Compression | undefined = options.compress

    const stream = await this.init.connectionManager.openStream(peer, this.init.protocol, { signal })
    const remote = state.peer
    this.init.streams.add(stream)
    const lp = lpStream(stream, {
      maxDataLength: maxResponseFrameLength,
      // we never ask for more than `window` requests' worth of frames, so this bounds memory
      maxBufferSize: (window + 1) * (maxResponseFrameLength + 8)
    })
    const inflight = new Map<number, Inflight>()
    const misbehaved = misbehavedFor(remote, () => { count(remote, 'misbehaved', 1) })

    const sendMore = async (): Promise<void> => {
      const frames: Uint8Array[] = []
      while (inflight.size < window && state.next < state.batches.length) {
        const batch = state.batches[state.next++]
        const id = ids.take()
        inflight.set(id, { ...batch, pos: 0 })
        const { cids, refs, prefixes } = batch
        if (prefixes != null && batch.held != null) frames.push(encodePrefixRequest({ id, prefixes, held: true }))
        else if (prefixes != null) frames.push(encodePrefixRequest(compress == null ? { id, prefixes } : { id, prefixes, compress }))
        else frames.push(encodeRequest(compress == null ? { id, cids } : refs == null ? { id, cids, compress } : { id, cids, compress, refs: refs.map(r => r?.cid ?? null) }))
      }
      if (frames.length > 0) {
        await lp.writeV(frames, { signal })
      }
    }

    try {
      await sendMore()
      while (inflight.size > 0) {
        const frame = await readAnswer(lp, {
          peer: remote,
          timeout: idleTimeout,
          signal,
          misbehaved,
          onTimeout: () => { count(remote, 'timeouts', 1) },
          failure: err => isLengthError(err)
            ? `oversize or invalid frame length: ${err.message}`
            : `stream ended with ${inflight.size} requests unanswered: ${err?.message}`
        })
        const wire = wireLength(frame.byteLength)
        result.wireBytes += wire
        count(remote, 'wireBytesFetched', wire)

        if (isHeldFrame(frame)) {
          this.receiveHeld(frame, inflight, state, misbehaved)
          await sendMore()
          continue
        }
        let res
        try {
          res = decodeResponse(frame, maxCids)
        } catch (err: any) {
          throw misbehaved(`undecodable frame: ${err.message}`, err)
        }
        const req = inflight.get(res.id)
        if (req == null || req.held != null) {
          throw misbehaved(`page response for unknown request id ${res.id}`)
        }
        const size = batchSize(req)
        if (res.start !== req.pos || res.entries.length === 0 || req.pos + res.entries.length > size) {
          throw misbehaved(`response frame out of order for request ${res.id} (start ${res.start}, ${res.entries.length} entries, expected start ${req.pos} of ${size})`)
        }
        this.receive(res.entries, req, state, remote, misbehaved)
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
      await stream.close({ signal: frameSignal(idleTimeout, signal) })
    } catch (err: any) {
      stream.abort(err)
      throw err
    } finally {
      this.init.streams.delete(stream)
    }
  }

  /** Record a held frame's bits for its request, which it answers whole. */
  private receiveHeld (frame: Uint8Array | Uint8ArrayList, inflight: Map<number, Inflight>, state: FetchState, misbehaved: Misbehaved): void {
    let res
    try {
      res = decodeHeldResponse(frame, this.init.maxCids)
    } catch (err: any) {
      throw misbehaved(`undecodable held frame: ${err.message}`, err)
    }
    const req = inflight.get(res.id)
    if (req?.held == null || state.held == null) {
      throw misbehaved(`held frame for request id ${res.id}, which asked no held query`)
    }
    if (res.count !== batchSize(req)) {
      throw misbehaved(`held frame for ${res.count} prefixes, request ${res.id} asked ${batchSize(req)}`)
    }
    const { offset } = req.held
    for (let i = 0; i < res.count; i++) {
      if ((res.bits[i >> 3] & (1 << (i & 7))) !== 0) state.held[(offset + i) >> 3] |= 1 << ((offset + i) & 7)
    }
    inflight.delete(res.id)
  }

  /**
   * Deliver one frame's entries of `req`: each page is decompressed against its reference where
   * it came that way and verified (against its CID, or its prefix) before `onPage` and the sink.
   */
  private receive (entries: PageEntry[], req: Inflight, state: FetchState, remote: string, misbehaved: Misbehaved): void {
    const { options, result } = state
    let pages = 0
    let bytesFetched = 0
    let missing = 0
    // counted per frame, also when a page of it fails (the pages before it were delivered)
    try {
      for (const entry of entries) {
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
      this.init.count(remote, 'pagesFetched', pages)
      this.init.count(remote, 'bytesFetched', bytesFetched)
      this.init.count(remote, 'missingFetched', missing)
    }
  }
}
