/**
 * Site exchange: peers tell each other which site they are in and keep an RTT estimate, so a
 * migration can rank holders — own store, same-site peers by RTT, other sites by RTT.
 *
 * @example
 * ```ts
 * const node = await createHost({ services: { site: siteExchange({ site: 'paris' }) } })
 * node.services.site.get(peerId) // { site: 'berlin', rttMs: 21.4, ... }
 * ```
 */
import type { ComponentLogger, PeerId, TypedEventTarget, Libp2pEvents } from '@libp2p/interface'
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal'
import { SiteExchange as SiteExchangeClass } from './site-exchange.ts'

export interface PeerSite {
  peerId: PeerId
  site: string
  /** Latest round-trip estimate in ms. */
  rttMs?: number
  connected?: boolean
  updatedAt: number
}

export interface SiteExchangeInit {
  /** This node's site label. */
  site: string
  protocolPrefix?: string
  /** Timeout of one hello exchange in ms (default DEFAULT_TIMEOUT). */
  timeout?: number
  /** How often RTTs are refreshed in ms (default DEFAULT_RTT_REFRESH_INTERVAL). */
  rttRefreshInterval?: number
}

export interface SiteExchangeComponents {
  registrar: Registrar
  connectionManager: ConnectionManager
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
}

export interface SiteExchange {
  readonly site: string
  get (peer: PeerId): PeerSite | undefined
  list (): PeerSite[]
  exchange (peer: PeerId): Promise<PeerSite>
}

export function siteExchange (init: SiteExchangeInit): (components: SiteExchangeComponents) => SiteExchange {
  return (components) => new SiteExchangeClass(components, init)
}

export * from './constants.ts'
export * from './errors.ts'
