/**
 * The page exchange service: registers `/memfabric/pages/1.0.0`, reads the requests of each
 * inbound stream and dispatches them to their handlers (handlers/), and fetches verified pages
 * and manifests from peers (client.ts, manifest-client.ts). Wire format in codec.ts.
 */
import { logger } from '@libp2p/logger'
import { lpStream } from '@libp2p/utils'
import type { AbortOptions, Connection, PeerId, Startable, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'
import { frameSignal, withIdleTimeout } from '../shared/frame-timeout.ts'
import { OpenStreams } from '../shared/open-streams.ts'
import { RequestIds } from '../shared/request-ids.ts'
import { ServiceLifecycle } from '../shared/service-lifecycle.ts'
import { Slots } from '../shared/slots.ts'
import {
  DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CIDS_PER_REQUEST, DEFAULT_MAX_INBOUND_STREAMS,
  DEFAULT_MAX_INFLIGHT_PER_STREAM, DEFAULT_MAX_OUTBOUND_STREAMS, DEFAULT_MAX_REQUEST_FRAME_LENGTH,
  DEFAULT_MAX_RESPONSE_FRAME_LENGTH, DEFAULT_MAX_STREAMS_PER_PEER, DEFAULT_RESPONSE_FRAME_BYTES,
  DEFAULT_WINDOW, DEFAULT_ZSTD_LEVEL, PAGES_PROTOCOL
} from './constants.ts'
import { decodeAnyRequest } from './codec.ts'
import type { ManifestPatch, ThinManifest } from './codec.ts'
import { PageClient } from './client.ts'
import { ManifestClient } from './manifest-client.ts'
import { PageCounterSet } from './counters.ts'
import { NotStartedError, PeerNotAllowedError, TransferTimeoutError } from './errors.ts'
import { requestHandlers } from './handlers/index.ts'
import type { AnswerRequest } from './handlers/index.ts'
import type {
  FetchOptions, FetchResult, PageCounters, PageExchangeComponents, PageExchangeInit
} from './index.ts'

const log = logger('memfabric:pages')

export class PageExchange implements Startable {
  readonly protocol = PAGES_PROTOCOL
  /** Totals over all peers. */
  readonly counters: PageCounters
  /** Counters per remote peer id (string). */
  readonly peerCounters: Map<string, PageCounters>

  private readonly maxCids: number
  private readonly maxRequestFrameLength: number
  private readonly maxInflightPerStream: number
  private readonly idleTimeout: number
  private readonly allowPeer?: (peer: PeerId) => boolean
  private readonly count: PageCounterSet['count']
  private readonly answer: AnswerRequest
  private readonly client: PageClient
  private readonly manifests: ManifestClient
  /** Inbound and outbound streams, aborted by stop(). */
  private readonly streams: OpenStreams
  /** Its signal, aborted by stop(), ends every pending read and store call of this service. */
  private readonly lifecycle: ServiceLifecycle

  constructor (components: PageExchangeComponents, init: PageExchangeInit) {
    this.maxCids = init.maxCidsPerRequest ?? DEFAULT_MAX_CIDS_PER_REQUEST
    this.maxRequestFrameLength = init.maxRequestFrameLength ?? DEFAULT_MAX_REQUEST_FRAME_LENGTH
    this.maxInflightPerStream = init.maxInflightPerStream ?? DEFAULT_MAX_INFLIGHT_PER_STREAM
    this.idleTimeout = init.idleTimeout ?? DEFAULT_IDLE_TIMEOUT
    this.allowPeer = init.allowPeer
    const counters = new PageCounterSet()
    this.counters = counters.total
    this.peerCounters = counters.perPeer
    this.count = counters.count
    this.streams = new OpenStreams({ name: 'page', maxStreamsPerPeer: init.maxStreamsPerPeer ?? DEFAULT_MAX_STREAMS_PER_PEER, log })
    this.lifecycle = new ServiceLifecycle({
      registrar: components.registrar,
      protocol: this.protocol,
      handler: (stream, connection) => { this.onStream(stream, connection) },
      maxInboundStreams: init.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS,
      maxOutboundStreams: init.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS,
      streams: this.streams,
      stopped: () => new NotStartedError('page exchange stopped')
    })
    const zstdLevel = init.zstdLevel ?? DEFAULT_ZSTD_LEVEL
    this.answer = requestHandlers({
      store: init.store,
      responseFrameBytes: init.responseFrameBytes ?? DEFAULT_RESPONSE_FRAME_BYTES,
      zstdLevel,
      idleTimeout: this.idleTimeout,
      count: this.count,
      patch: init.patch,
      slots: init.slots,
      log
    })
    const clientInit = {
      protocol: this.protocol,
      connectionManager: components.connectionManager,
      streams: this.streams,
      ids: new RequestIds(),
      count: this.count,
      isStarted: () => this.lifecycle.isStarted(),
      shutdown: () => this.lifecycle.signal,
      maxCids: this.maxCids,
      maxResponseFrameLength: init.maxResponseFrameLength ?? DEFAULT_MAX_RESPONSE_FRAME_LENGTH,
      window: init.window ?? DEFAULT_WINDOW,
      idleTimeout: this.idleTimeout
    }
    this.client = new PageClient(clientInit)
    this.manifests = new ManifestClient(clientInit)
  }

  readonly [Symbol.toStringTag] = '@memfabric/pages'

  isStarted (): boolean {
    return this.lifecycle.isStarted()
  }

  async start (): Promise<void> {
    await this.lifecycle.start()
  }

  async stop (): Promise<void> {
    await this.lifecycle.stop()
  }

  /**
   * Ask `peer` for image `root`'s slots as a thin manifest (zero runs and digest prefixes);
   * undefined when it does not hold the image. Also returns the bytes read off the stream.
   * `maxEntries` bounds what is accepted (an image of n slots has at most n entries).
   */
  async manifestThin (peer: PeerId | Multiaddr, root: CID, options: AbortOptions & { maxEntries?: number } = {}): Promise<{ thin?: ThinManifest, wireBytes: number }> {
    return this.manifests.manifestThin(peer, root, options)
  }

  /**
   * Ask `peer` how image `root` differs from the older image it would use as basis;
   * undefined when it has none. Also returns the bytes read off the stream.
   */
  async manifestPatch (peer: PeerId | Multiaddr, root: CID, options: AbortOptions = {}): Promise<{ patch?: ManifestPatch, wireBytes: number }> {
    return this.manifests.manifestPatch(peer, root, options)
  }

  /**
   * Fetch pages from `peer`, verifying each against its CID on arrival. Resolves once every
   * CID was answered (received or missing); throws PeerMisbehavedError / TransferTimeoutError
   * on the first fault, after delivering the pages verified before it.
   */
  async fetch (peer: PeerId | Multiaddr, cids: CID[], options: FetchOptions = {}): Promise<FetchResult> {
    return this.client.fetch(peer, cids, options)
  }

  /**
   * Fetch pages from `peer` by digest prefix (PREFIX_BYTES bytes each, concatenated). Each page
   * is hashed on arrival and kept only if its digest starts with the prefix asked; `onPage` gets
   * its CID. Prefixes the peer holds no page for are skipped (`missing` stays empty: compare
   * `received` with what was asked).
   */
  async fetchByPrefix (peer: PeerId | Multiaddr, prefixes: Uint8Array, options: Omit<FetchOptions, 'refs'> = {}): Promise<FetchResult> {
    return this.client.fetchByPrefix(peer, prefixes, options)
  }

  /**
   * Ask `peer` which of `prefixes` (PREFIX_BYTES bytes each, concatenated) it holds a page for:
   * bit i (LSB first in byte i / 8) set for prefix i. Only a bitmap travels, so a puller learns
   * in one LAN round trip what its site lacks, before any page moves.
   */
  async heldByPrefix (peer: PeerId | Multiaddr, prefixes: Uint8Array, options: Pick<FetchOptions, 'signal' | 'idleTimeout'> = {}): Promise<{ held: Uint8Array, wireBytes: number }> {
    return this.client.heldByPrefix(peer, prefixes, options)
  }

  private onStream (stream: Stream, connection: Connection): void {
    const peer = connection.remotePeer.toString()
    if (this.allowPeer != null && !this.allowPeer(connection.remotePeer)) {
      log('peer %s is not on the allow-list, refusing its page stream', peer)
      stream.abort(new PeerNotAllowedError(`peer ${peer} may not fetch pages`))
      return
    }
    this.streams.serveInbound(stream, peer, async () => this.serve(stream, peer))
  }

  /** Answer requests from one stream until the client closes its end. */
  private async serve (stream: Stream, peer: string): Promise<void> {
    const lp = lpStream(stream, {
      maxDataLength: this.maxRequestFrameLength,
      // requests beyond our in-flight limit wait here; a client that floods past it is cut off
      maxBufferSize: Math.max(4 * 1024 * 1024, this.maxInflightPerStream * this.maxRequestFrameLength)
    })
    const controller = new AbortController()
    const onShutdown = (): void => { controller.abort(this.lifecycle.signal.reason) }
    this.lifecycle.signal.addEventListener('abort', onShutdown, { once: true })
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
        const frame = await this.readRequest(lp.read(), peer, slots, controller.signal)
        if (frame == null) {
          slots.release()
          break
        }
        const req = decodeAnyRequest(frame, this.maxCids)
        const task = this.answer(lp, req, peer, controller.signal)
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
      await stream.close({ signal: frameSignal(this.idleTimeout) })
    } finally {
      stream.removeEventListener('close', onClose)
      this.lifecycle.signal.removeEventListener('abort', onShutdown)
      controller.abort()
    }
  }

  /**
   * The next request frame, undefined once the client closed its end. The idle timeout is
   * re-armed while answers are pending: a client waiting on our answers is not idle.
   */
  private async readRequest<T> (read: Promise<T>, peer: string, slots: Slots, signal: AbortSignal): Promise<T | undefined> {
    while (true) {
      try {
        return await withIdleTimeout(read, this.idleTimeout, () => new TransferTimeoutError(peer, this.idleTimeout), signal)
      } catch (err: any) {
        if (err instanceof TransferTimeoutError && slots.active > 1) {
          continue
        }
        if (err?.name === 'UnexpectedEOFError') {
          return undefined
        }
        if (err instanceof TransferTimeoutError) {
          this.count(peer, 'timeouts', 1)
        }
        throw err
      }
    }
  }
}
