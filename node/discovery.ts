/**
 * LAN discovery: mDNS (`@libp2p/mdns`) on a memfabric service tag, plus the dial that turns a
 * discovered peer into a connection. libp2p 3 only adds discovered peers to the peer store;
 * it does not dial them, so without this the DHT would never learn of them.
 *
 * A discovered peer is dialled like any other: the noise handshake carries the fabric
 * prologue (a host of another fabric fails it), and `--allow-peer` still decides who may
 * fetch pages. mDNS only says where a peer is, never that it is trusted.
 */
import { mdns } from '@libp2p/mdns'
import type { MulticastDNSComponents } from '@libp2p/mdns'
import type { PeerDiscovery, PeerId, PeerInfo } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'

/** Service name of memfabric peers: other libp2p software on the LAN (IPFS) is not asked. */
export const DEFAULT_MDNS_SERVICE_TAG = '_memfabric._udp.local'
/** How often a host asks the LAN who is there (ms). */
export const DEFAULT_MDNS_INTERVAL = 10_000
/** A peer whose dial failed (another fabric, gone) is not dialled again for this long (ms). */
export const DEFAULT_MDNS_REDIAL_DELAY = 60_000
/** Time allowed for one dial of a discovered peer (ms). */
export const DEFAULT_MDNS_DIAL_TIMEOUT = 10_000

export interface MdnsOptions {
  /** Service tag (default DEFAULT_MDNS_SERVICE_TAG); hosts only find hosts of the same tag. */
  serviceTag?: string
  /** Query interval in ms (default DEFAULT_MDNS_INTERVAL). */
  interval?: number
  /** UDP port (default 5353, the mDNS port; tests use their own). */
  port?: number
  /** Back-off after a failed dial in ms (default DEFAULT_MDNS_REDIAL_DELAY). */
  redialDelay?: number
}

interface DialComponents extends MulticastDNSComponents {
  peerId: PeerId
  connectionManager: {
    getConnections (peer?: PeerId): unknown[]
    openConnection (peer: PeerId, options?: { signal?: AbortSignal }): Promise<unknown>
  }
}

/**
 * A peer-discovery factory for `createLibp2p({ peerDiscovery })`: mDNS that also dials each
 * newly seen peer once (and again only after `redialDelay` if that failed).
 */
export function mdnsDiscovery (options: MdnsOptions = {}): (components: DialComponents) => PeerDiscovery {
  const redialDelay = options.redialDelay ?? DEFAULT_MDNS_REDIAL_DELAY
  return (components) => {
    const discovery = mdns({
      serviceTag: options.serviceTag ?? DEFAULT_MDNS_SERVICE_TAG,
      interval: options.interval ?? DEFAULT_MDNS_INTERVAL,
      ...(options.port != null ? { port: options.port } : {})
    })(components)
    const log = components.logger.forComponent('memfabric:mdns')
    const dialing = new Set<string>()
    const failedAt = new Map<string, number>()
    discovery.addEventListener('peer', (evt: CustomEvent<PeerInfo>) => {
      const peer = evt.detail.id
      const key = peer.toString()
      if (peer.equals(components.peerId) || dialing.has(key)) return
      if (components.connectionManager.getConnections(peer).length > 0) return
      const failed = failedAt.get(key)
      if (failed != null && Date.now() - failed < redialDelay) return
      dialing.add(key)
      log('dialling %p found on the LAN at %s', peer, evt.detail.multiaddrs.map(String).join(', '))
      components.connectionManager.openConnection(peer, { signal: AbortSignal.timeout(DEFAULT_MDNS_DIAL_TIMEOUT) })
        .then(() => { failedAt.delete(key) })
        .catch((err: Error) => {
          // e.g. a host of another fabric: its noise handshake fails on the prologue
          failedAt.set(key, Date.now())
          log('could not connect to %p found on the LAN - %e', peer, err)
        })
        .finally(() => { dialing.delete(key) })
    })
    return discovery
  }
}

/**
 * Whether mDNS fits a host that listens on `listen`: only when some address is reachable from
 * the LAN. A host on loopback only (tests, the local test network) has nobody to find.
 */
export function mdnsFits (listen: readonly string[]): boolean {
  return listen.some(address => {
    try {
      const ip = multiaddr(address).getComponents().find(c => c.name === 'ip4' || c.name === 'ip6')?.value
      return ip != null && !ip.startsWith('127.') && ip !== '::1'
    } catch {
      return false
    }
  })
}
