/**
 * Presence query: "which of these N CIDs do you hold?" answered with a bitmap, so a
 * destination can ask its site peers before touching the DHT.
 * Protocol `/memfabric/presence/1.0.0`; the wire format is documented in codec.ts.
 *
 * @example
 * ```ts
 * const node = await createHost({ services: { presence: presence({ store: repo.store }) } })
 * const held = await node.services.presence.query(peerId, cids, { signal })
 * const wanted = cids.filter((_, i) => held[i])
 * ```
 */
import type { AbortOptions, PeerId, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { PageStore } from '../../store/index.ts'
import { Presence } from './presence.ts'

export * from './constants.ts'
export * from './errors.ts'
export { Presence }

/** What the service needs from libp2p (a narrow view of its components). */
export interface PresenceComponents {
  registrar: {
    handle (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void>
    unhandle (protocol: string, options?: AbortOptions): Promise<void>
  }
  connectionManager: {
    openStream (peer: PeerId | Multiaddr, protocol: string, options?: AbortOptions): Promise<Stream>
  }
}

export interface PresenceInit {
  /** Queries are answered from here with `has`. */
  store: PageStore
  /** Most CIDs per request frame (default DEFAULT_MAX_CIDS_PER_QUERY = 16384). */
  maxCidsPerQuery?: number
  /** Read caps (defaults DEFAULT_MAX_REQUEST_FRAME_LENGTH = 1 MiB, _RESPONSE_ = 4 KiB). */
  maxRequestFrameLength?: number
  maxResponseFrameLength?: number
  /** Inbound streams kept open per remote peer; more are reset (default DEFAULT_MAX_STREAMS_PER_PEER = 8). */
  maxStreamsPerPeer?: number
  /** Per-connection libp2p limits (defaults DEFAULT_MAX_INBOUND_STREAMS / _OUTBOUND_). */
  maxInboundStreams?: number
  maxOutboundStreams?: number
  /** Abort a stream with work outstanding after this long without a frame (default DEFAULT_IDLE_TIMEOUT = 30 s). */
  idleTimeout?: number
  /** Client: queries in flight per stream (default DEFAULT_WINDOW = 4). */
  window?: number
}

export interface QueryOptions extends AbortOptions {
  window?: number
  idleTimeout?: number
}

export interface PresenceCounters {
  queriesServed: number
  cidsServed: number
  queriesSent: number
  cidsQueried: number
  misbehaved: number
  timeouts: number
  /** Inbound streams reset because their peer had `maxStreamsPerPeer` open. */
  refused: number
}

/** Mount with `services: { presence: presence({ store }) }`. */
export function presence (init: PresenceInit): (components: PresenceComponents) => Presence {
  return (components) => new Presence(components, init)
}
