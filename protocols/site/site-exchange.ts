import { serviceCapabilities, setMaxListeners } from '@libp2p/interface'
import type { AbortOptions, Connection, Logger, PeerId, Startable, Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { handleProtocol } from '../shared/handle-protocol.ts'
import { protocolId } from '../shared/protocol-id.ts'
import { decodeHello, encodeHello } from './codec.ts'
import {
  DEFAULT_RTT_REFRESH_INTERVAL, DEFAULT_TIMEOUT, MAX_MESSAGE_SIZE,
  PROTOCOL_NAME, PROTOCOL_PREFIX, PROTOCOL_VERSION
} from './constants.ts'
import type { PeerSite, SiteExchangeComponents, SiteExchangeInit, SiteExchange as SiteExchangeInterface } from './index.ts'

/**
 * Tells connected peers which site this node is in, learns theirs, and keeps an RTT estimate
 * per peer (hello round trip first, then libp2p's connection monitor pings).
 */
export class SiteExchange implements Startable, SiteExchangeInterface {
  readonly protocol: string
  readonly site: string
  private readonly components: SiteExchangeComponents
  private readonly log: Logger
  private readonly timeout: number
  private readonly refreshInterval: number
  private readonly peers = new Map<string, PeerSite>()
  private timer?: ReturnType<typeof setInterval>
  private started = false

  constructor (components: SiteExchangeComponents, init: SiteExchangeInit) {
    this.components = components
    this.site = init.site
    this.protocol = protocolId(init.protocolPrefix ?? PROTOCOL_PREFIX, PROTOCOL_NAME, PROTOCOL_VERSION)
    this.timeout = init.timeout ?? DEFAULT_TIMEOUT
    this.refreshInterval = init.rttRefreshInterval ?? DEFAULT_RTT_REFRESH_INTERVAL
    this.log = components.logger.forComponent('memfabric:site')
    this.onIdentify = this.onIdentify.bind(this)
    this.onDisconnect = this.onDisconnect.bind(this)
  }

  readonly [Symbol.toStringTag] = 'memfabric/site-exchange'
  readonly [serviceCapabilities] = ['@memfabric/site']

  async start (): Promise<void> {
    await handleProtocol(this.components.registrar, this.protocol, async (stream, connection) => this.handle(stream, connection), (err, connection) => {
      this.log.error('hello from %p failed - %e', connection.remotePeer, err)
    }, { maxInboundStreams: 4, maxOutboundStreams: 4 })
    this.components.events.addEventListener('peer:identify', this.onIdentify)
    this.components.events.addEventListener('peer:disconnect', this.onDisconnect)
    this.timer = setInterval(() => { this.refreshRtt() }, this.refreshInterval)
    this.timer.unref()
    this.started = true
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    this.components.events.removeEventListener('peer:identify', this.onIdentify)
    this.components.events.removeEventListener('peer:disconnect', this.onDisconnect)
    await this.components.registrar.unhandle(this.protocol)
    this.started = false
  }

  isStarted (): boolean {
    return this.started
  }

  /** Site and RTT of a peer, when known. */
  get (peer: PeerId): PeerSite | undefined {
    return this.peers.get(peer.toString())
  }

  /** Every peer whose site is known. */
  list (): PeerSite[] {
    return [...this.peers.values()]
  }

  /** Run the hello exchange with a peer now (also done on every outbound identify). */
  async exchange (peer: PeerId, options: AbortOptions = {}): Promise<PeerSite> {
    const signal = options.signal ?? AbortSignal.timeout(this.timeout)
    setMaxListeners(Infinity, signal)
    const stream = await this.components.connectionManager.openStream(peer, this.protocol, { signal })
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_SIZE })
      const start = performance.now()
      await lp.write(encodeHello({ site: this.site }), { signal })
      const hello = decodeHello(await lp.read({ signal }))
      const rttMs = performance.now() - start
      await stream.close({ signal })
      return this.record(peer, hello.site, rttMs)
    } catch (err: any) {
      stream.abort(err)
      throw err
    }
  }

  private async handle (stream: Stream, connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(this.timeout)
    const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_SIZE })
    const hello = decodeHello(await lp.read({ signal }))
    await lp.write(encodeHello({ site: this.site }), { signal })
    await stream.close({ signal })
    this.record(connection.remotePeer, hello.site, connection.rtt)
  }

  private record (peer: PeerId, site: string, rttMs?: number): PeerSite {
    const key = peer.toString()
    const previous = this.peers.get(key)
    const entry: PeerSite = {
      peerId: peer,
      site,
      rttMs: rttMs ?? previous?.rttMs,
      updatedAt: Date.now()
    }
    this.peers.set(key, entry)
    this.components.events.safeDispatchEvent('memfabric:site' as any, { detail: entry })
    return entry
  }

  private onIdentify (evt: CustomEvent<{ peerId: PeerId, protocols: string[], connection: Connection }>): void {
    const { peerId, protocols, connection } = evt.detail
    // the dialing side starts the exchange so each pair runs it once
    if (!protocols.includes(this.protocol) || connection.direction !== 'outbound') {
      return
    }
    this.exchange(peerId).catch(err => {
      this.log('hello with %p failed - %e', peerId, err)
    })
  }

  private onDisconnect (evt: CustomEvent<PeerId>): void {
    const entry = this.peers.get(evt.detail.toString())
    if (entry != null) {
      entry.connected = false
    }
  }

  private refreshRtt (): void {
    for (const connection of this.components.connectionManager.getConnections()) {
      const entry = this.peers.get(connection.remotePeer.toString())
      if (entry != null && connection.rtt != null) {
        entry.rttMs = connection.rtt
        entry.connected = true
      }
    }
  }
}
