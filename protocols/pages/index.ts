/**
 * Page exchange: ask a peer for many pages by CID over one stream and get them streamed
 * back, many requests in flight, every page verified against its CID on arrival.
 * Protocol `/memfabric/pages/1.0.0`; the wire format is documented in codec.ts.
 *
 * @example
 * ```ts
 * const node = await createHost({ services: { pages: pageExchange({ store: repo.store }) } })
 * const { received, missing, wireBytes } = await node.services.pages.fetch(peerId, cids, {
 *   sink: repo.store,          // verified pages are written here in batches
 *   compress: 'zstd',          // across sites
 *   signal: AbortSignal.timeout(60_000)
 * })
 * ```
 *
 * Error codes (`err.code`):
 * | code | when |
 * |---|---|
 * | ERR_PEER_MISBEHAVED | a page failed verification, a frame did not decode or was oversize, a response named an unknown request or came out of order, the stream ended with requests unanswered (`err.peer`, `err.reason`) |
 * | ERR_TRANSFER_TIMEOUT | no frame for `idleTimeout` ms while requests were outstanding |
 * | ERR_INVALID_PAGE_CID | a CID given to `fetch` is not CIDv1 raw sha2-256 |
 * | ERR_NOT_STARTED | the service is not started, or `stop()` ended the transfer |
 * | ERR_TOO_MANY_STREAMS | (server side, sent as a stream reset) a peer opened more than `maxStreamsPerPeer` streams |
 * | ERR_PEER_NOT_ALLOWED | (server side, sent as a stream reset) `allowPeer` refused the peer |
 * | ERR_INVALID_MESSAGE | a frame did not decode (codec level; the client reports it as ERR_PEER_MISBEHAVED) |
 */
import type { AbortOptions, PeerId, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'
import type { Page, PageStore } from '../../store/index.ts'
import { PageExchange } from './page-exchange.ts'
import type { Compression, ManifestPatch } from './codec.ts'

export * from './constants.ts'
export * from './errors.ts'
export { PageExchange }
export type { Compression, ManifestPatch }
export type { ThinManifest } from './codec/thin-frames.ts'
export { THIN_ENTRY_BYTES, THIN_PAGE, THIN_ZERO_RUN, zeroRunLength } from './codec/thin-frames.ts'

/** What the service needs from libp2p (a narrow view of its components). */
export interface PageExchangeComponents {
  registrar: {
    handle (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void>
    unhandle (protocol: string, options?: AbortOptions): Promise<void>
  }
  connectionManager: {
    openStream (peer: PeerId | Multiaddr, protocol: string, options?: AbortOptions): Promise<Stream>
  }
}

export interface PageExchangeInit {
  /** Pages are served from here. */
  store: PageStore
  /** Most CIDs per request frame (default DEFAULT_MAX_CIDS_PER_REQUEST = 256). */
  maxCidsPerRequest?: number
  /** Target payload per response frame (default DEFAULT_RESPONSE_FRAME_BYTES = 1 MiB). */
  responseFrameBytes?: number
  /** Read cap for response frames (default DEFAULT_MAX_RESPONSE_FRAME_LENGTH). */
  maxResponseFrameLength?: number
  /** Read cap for request frames (default DEFAULT_MAX_REQUEST_FRAME_LENGTH = 64 KiB). */
  maxRequestFrameLength?: number
  /** Requests served at once per stream (default DEFAULT_MAX_INFLIGHT_PER_STREAM = 8). */
  maxInflightPerStream?: number
  /** Inbound page streams per remote peer (default DEFAULT_MAX_STREAMS_PER_PEER = 16). */
  maxStreamsPerPeer?: number
  /** Per-connection libp2p limits (defaults DEFAULT_MAX_INBOUND_STREAMS / _OUTBOUND_). */
  maxInboundStreams?: number
  maxOutboundStreams?: number
  /** Abort a stream with work outstanding after this long without a frame (default DEFAULT_IDLE_TIMEOUT = 30 s). */
  idleTimeout?: number
  /** Client: requests in flight per stream (default DEFAULT_WINDOW = 8). */
  window?: number
  /** Server: zstd level for requests that ask for compression (default DEFAULT_ZSTD_LEVEL = 8). */
  zstdLevel?: number
  /** Server: the slots of image `root` in order (for thin manifests, see codec/thin-frames.ts); it may throw when the image is not held. */
  slots?(root: CID, options: AbortOptions): AsyncIterable<{ cid?: CID | null }>
  /** Server: how image `root` differs from the older image used as its basis (see codec.ts), or undefined. */
  patch?(root: CID, options: AbortOptions): Promise<ManifestPatch | undefined>
  /** Server: serve only peers this accepts; others' streams are reset (ERR_PEER_NOT_ALLOWED). Default: every peer that can connect. */
  allowPeer?(peer: PeerId): boolean
}

export interface FetchOptions extends AbortOptions {
  /** Called with each page once verified. `bytes` may be a view into a frame buffer. */
  onPage?(cid: CID, bytes: Uint8Array): void
  /** Ask the server to zstd pages where that pays (for WAN links). */
  compress?: Compression
  /**
   * With `compress`: per cid, a page we hold that is probably similar (the same slot of an
   * older image of the VM, see `manifestPatch`);
   * the server may send the page compressed against it, which is far smaller for a partly
   * rewritten page. Its bytes must be verified already.
   */
  refs?: Array<Page | undefined>
  /** Write verified pages here with `putMany`, in batches of `sinkBatch`. */
  sink?: PageStore
  /** Pages per sink batch (default DEFAULT_SINK_BATCH = 256). */
  sinkBatch?: number
  /** Requests in flight per stream (default: the service's `window`). */
  window?: number
  /** Streams to spread the requests over (default DEFAULT_STREAMS = 1). */
  streams?: number
  /** Idle timeout per frame (default: the service's `idleTimeout`). */
  idleTimeout?: number
}

export interface FetchResult {
  /** Verified pages (zero-page CIDs included; those are never fetched). */
  received: CID[]
  /** CIDs the peer said it does not hold. */
  missing: CID[]
  /** Page bytes received (decompressed). */
  bytes: number
  /** Pages that arrived compressed against their reference (`refs`). */
  deltaPages: number
  /** Frame bytes read off the stream (length prefixes included, muxer/noise overhead not). */
  wireBytes: number
}

/** Counters kept per peer and in total; a later issue exports them to Prometheus. */
export interface PageCounters {
  pagesServed: number
  bytesServed: number
  wireBytesServed: number
  missingServed: number
  requestsServed: number
  pagesFetched: number
  bytesFetched: number
  wireBytesFetched: number
  missingFetched: number
  misbehaved: number
  timeouts: number
}

/** Mount with `services: { pages: pageExchange({ store }) }`. */
export function pageExchange (init: PageExchangeInit): (components: PageExchangeComponents) => PageExchange {
  return (components) => new PageExchange(components, init)
}
