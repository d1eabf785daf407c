/**
 * User-space WAN emulator for the local multi-site testnet.
 *
 * Site N owns 127.0.N.0/24. For a node listening in site S, `expose()` opens one TCP proxy per
 * other site (on 127.0.<other>.254) that forwards to the node through link(other→S) and sends
 * the answers back through link(S→other). Nodes of the other site dial the proxy instead of the
 * node (see `dialMap()`), so every byte between two sites crosses exactly one shaped link per
 * direction, shared by all connections between those sites, and is counted here.
 */
import net from 'node:net'
import { logger } from '@libp2p/logger'
import {
  DEFAULT_FLOW_WINDOW_BYTES,
  DEFAULT_LINK_QUEUE_BYTES,
  DEFAULT_PROXY_HOST_OCTET,
  DEFAULT_WAN_MBIT,
  DEFAULT_WAN_RTT_MS,
  MAX_SITE_ID
} from './constants.ts'
import { InvalidWanOptionsError, UnknownSiteError, WanClosedError } from './errors.ts'
import { Link } from './link.ts'
import type { LinkFlow } from './link.ts'

const log = logger('memfabric:wan')

export interface WanSite {
  /** 1..254: the site owns 127.0.<id>.0/24 */
  id: number
  /** Human name for logs and stats (default `site<id>`) */
  name?: string
}

export interface WanEmulatorInit {
  sites: WanSite[]
  /** Round trip between any two sites, ms; each direction gets half (default DEFAULT_WAN_RTT_MS) */
  wanRttMs?: number
  /** Bandwidth of each direction between two sites, Mbit/s (default DEFAULT_WAN_MBIT) */
  wanMbit?: number
  /**
   * When set, same-site traffic is also proxied, through one LAN link per site with this
   * bandwidth (Mbit/s) shared by both directions; when unset it goes direct (default unset)
   */
  lanMbit?: number
  /** Round trip inside a site when `lanMbit` is set, ms (default 0) */
  lanRttMs?: number
  /** Serializer queue of each link, bytes (default DEFAULT_LINK_QUEUE_BYTES) */
  queueBytes?: number
  /** Per-connection window inside a link, bytes (default DEFAULT_FLOW_WINDOW_BYTES) */
  flowWindowBytes?: number
  /** Last octet of proxy listener addresses (default DEFAULT_PROXY_HOST_OCTET) */
  proxyHostOctet?: number
}

export interface WanTarget {
  /** Site the target listens in */
  site: number
  /** Address in 127.0.<site>.0/24 */
  host: string
  port: number
}

export interface ProxyAddress {
  host: string
  port: number
}

export interface WanLinkStats {
  from: number
  to: number
  fromName: string
  toName: string
  latencyMs: number
  /** Bandwidth, Mbit/s */
  mbit: number
  /** Payload bytes the emulator carried in this direction */
  bytes: number
  /** Connections that ever used this direction */
  connections: number
  activeConnections: number
  /** Bytes queued or in flight in this direction right now */
  inFlightBytes: number
}

interface Exposure {
  target: WanTarget
  proxies: Map<number, ProxyAddress>
}

/** Loopback address `127.0.<site>.<octet>` of a site. */
export function siteHost (site: number, octet: number): string {
  return `127.0.${site}.${octet}`
}

export class WanEmulator {
  readonly sites: ReadonlyMap<number, Readonly<Required<WanSite>>>
  readonly wanRttMs: number
  readonly wanMbit: number
  readonly lanMbit: number | undefined
  private readonly proxyHostOctet: number
  /** key `${from}>${to}`; a LAN link has from === to */
  private readonly links = new Map<string, Link>()
  private readonly exposures = new Map<string, Exposure>()
  private readonly servers = new Set<net.Server>()
  private readonly sockets = new Set<net.Socket>()
  private closing: Promise<void> | undefined

  constructor (init: WanEmulatorInit) {
    this.wanRttMs = init.wanRttMs ?? DEFAULT_WAN_RTT_MS
    this.wanMbit = init.wanMbit ?? DEFAULT_WAN_MBIT
    this.lanMbit = init.lanMbit
    this.proxyHostOctet = init.proxyHostOctet ?? DEFAULT_PROXY_HOST_OCTET
    const lanRttMs = init.lanRttMs ?? 0
    if (!(this.wanRttMs >= 0) || !(this.wanMbit > 0) || !(lanRttMs >= 0) || (this.lanMbit != null && !(this.lanMbit > 0))) {
      throw new InvalidWanOptionsError('wanRttMs and lanRttMs must be >= 0, wanMbit and lanMbit > 0')
    }
    if (!Number.isInteger(this.proxyHostOctet) || this.proxyHostOctet < 1 || this.proxyHostOctet > 254) {
      throw new InvalidWanOptionsError(`proxyHostOctet must be 1..254, got ${this.proxyHostOctet}`)
    }
    const sites = new Map<number, Required<WanSite>>()
    for (const site of init.sites) {
      if (!Number.isInteger(site.id) || site.id < 1 || site.id > MAX_SITE_ID) {
        throw new InvalidWanOptionsError(`site id must be an integer 1..${MAX_SITE_ID}, got ${site.id}`)
      }
      if (sites.has(site.id)) throw new InvalidWanOptionsError(`duplicate site id ${site.id}`)
      sites.set(site.id, { id: site.id, name: site.name ?? `site${site.id}` })
    }
    this.sites = sites
    const common = { queueBytes: init.queueBytes ?? DEFAULT_LINK_QUEUE_BYTES, flowWindowBytes: init.flowWindowBytes ?? DEFAULT_FLOW_WINDOW_BYTES }
    for (const from of sites.values()) {
      for (const to of sites.values()) {
        if (from.id === to.id) {
          if (this.lanMbit == null) continue
          this.links.set(`${from.id}>${to.id}`, new Link({ ...common, name: `${from.name} LAN`, latencyMs: lanRttMs / 2, bitsPerSecond: this.lanMbit * 1e6 }))
        } else {
          this.links.set(`${from.id}>${to.id}`, new Link({ ...common, name: `${from.name}→${to.name}`, latencyMs: this.wanRttMs / 2, bitsPerSecond: this.wanMbit * 1e6 }))
        }
      }
    }
  }

  /** Builds an emulator; listeners are opened by `expose()`. */
  static async create (init: WanEmulatorInit): Promise<WanEmulator> {
    const wan = new WanEmulator(init)
    log('started: %d sites, rtt %d ms, %d Mbit/s, lan %s', wan.sites.size, wan.wanRttMs, wan.wanMbit, wan.lanMbit ?? 'direct')
    return wan
  }

  /**
   * Makes a node listening in `target.site` reachable from every other site (and from its own
   * when `lanMbit` is set) through the shaped links. Returns the proxy address per site.
   * Exposing the same target twice returns the same proxies.
   */
  async expose (target: WanTarget): Promise<Map<number, ProxyAddress>> {
    if (this.closing != null) throw new WanClosedError()
    this.site(target.site)
    if (!target.host.startsWith(`127.0.${target.site}.`)) {
      throw new InvalidWanOptionsError(`target ${target.host} is not in site ${target.site}'s range 127.0.${target.site}.0/24`)
    }
    const key = `${target.host}:${target.port}`
    const existing = this.exposures.get(key)
    if (existing != null) return new Map(existing.proxies)
    const exposure: Exposure = { target: { ...target }, proxies: new Map() }
    this.exposures.set(key, exposure)
    try {
      for (const from of this.sites.keys()) {
        const request = this.links.get(`${from}>${target.site}`)
        const response = this.links.get(`${target.site}>${from}`)
        if (request == null || response == null) continue
        exposure.proxies.set(from, await this.listen(from, target, request, response))
      }
    } catch (err) {
      this.exposures.delete(key)
      throw err
    }
    log('exposed %s (site %d) via %o', key, target.site, [...exposure.proxies.values()].map(p => `${p.host}:${p.port}`))
    return new Map(exposure.proxies)
  }

  /** The `{ "ip:port": "proxyip:port" }` map a node of `forSite` uses to dial exposed targets. */
  dialMap (forSite: number): Record<string, string> {
    this.site(forSite)
    const map: Record<string, string> = {}
    for (const [key, { proxies }] of this.exposures) {
      const proxy = proxies.get(forSite)
      if (proxy != null) map[key] = `${proxy.host}:${proxy.port}`
    }
    return map
  }

  /** Bytes and connections per directed site pair, as counted by the emulator. */
  stats (): WanLinkStats[] {
    const out: WanLinkStats[] = []
    for (const [key, link] of this.links) {
      const [from, to] = key.split('>').map(Number)
      const s = link.stats()
      out.push({
        from,
        to,
        fromName: this.site(from).name,
        toName: this.site(to).name,
        latencyMs: s.latencyMs,
        mbit: s.bitsPerSecond / 1e6,
        bytes: s.bytes,
        connections: s.connections,
        activeConnections: s.activeConnections,
        inFlightBytes: s.inFlightBytes
      })
    }
    return out
  }

  /** Closes every listener and connection. Idempotent. */
  async close (): Promise<void> {
    this.closing ??= this.doClose()
    return this.closing
  }

  private async doClose (): Promise<void> {
    const closed = [...this.servers].map(async server => new Promise<void>(resolve => { server.close(() => { resolve() }) }))
    for (const socket of this.sockets) socket.destroy()
    for (const link of this.links.values()) link.close()
    await Promise.all(closed)
    this.servers.clear()
    this.sockets.clear()
    log('closed')
  }

  private site (id: number): Required<WanSite> {
    const site = this.sites.get(id)
    if (site == null) throw new UnknownSiteError(`unknown site ${id}`)
    return site
  }

  private async listen (from: number, target: WanTarget, request: Link, response: Link): Promise<ProxyAddress> {
    const host = siteHost(from, this.proxyHostOctet)
    // allowHalfOpen: a client's FIN must reach the target only after the delayed data before it
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, client => {
      this.proxy(client, host, target, request, response)
    })
    this.servers.add(server)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host, port: 0 }, () => {
        server.off('error', reject)
        resolve()
      })
    }).catch(err => {
      this.servers.delete(server)
      throw err
    })
    server.on('error', err => { log.error('proxy %s for %s:%d failed: %e', host, target.host, target.port, err) })
    const address = server.address() as net.AddressInfo
    return { host, port: address.port }
  }

  private proxy (client: net.Socket, localAddress: string, target: WanTarget, request: Link, response: Link): void {
    if (this.closing != null) {
      client.destroy()
      return
    }
    // leave from the proxy's address so the target sees the peer in the other site's range
    const upstream = net.connect({ host: target.host, port: target.port, localAddress, allowHalfOpen: true, noDelay: true })
    this.sockets.add(client)
    this.sockets.add(upstream)
    const flows: LinkFlow[] = [request.pipe(client, upstream), response.pipe(upstream, client)]
    let open = 2
    const onClose = (): void => {
      if (--open > 0) return
      for (const flow of flows) flow.close()
      this.sockets.delete(client)
      this.sockets.delete(upstream)
    }
    const onError = (err: Error): void => {
      log('connection %s:%d via %s: %s', target.host, target.port, localAddress, err.message)
      client.destroy()
      upstream.destroy()
    }
    for (const socket of [client, upstream]) {
      socket.on('close', onClose)
      socket.on('error', onError)
    }
  }
}
