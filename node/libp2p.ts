/**
 * The libp2p host every memfabric peer runs: TCP, noise, yamux, identify, ping and a
 * kad-dht in server mode on the fabric's private protocol id; peers are found through
 * bootstrap addresses and, on a LAN, mDNS.
 */
import { createLibp2p } from 'libp2p'
import type { Libp2pOptions } from 'libp2p'
import type { Libp2p, PrivateKey, ServiceMap } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { Identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import type { Ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import type { KadDHT } from '@libp2p/kad-dht'
import { bootstrap } from '@libp2p/bootstrap'
import { createHash } from 'node:crypto'
import { tcpWithDialMap } from './transport/dial-map.ts'
import { mdnsDiscovery, mdnsFits } from './discovery.ts'
import type { MdnsOptions } from './discovery.ts'
import type { DialMap } from './transport/dial-map.ts'

/** Private kad protocol id: keeps the fabric's DHT apart from the public IPFS DHT. */
export const DEFAULT_KAD_PROTOCOL = '/memfabric/kad/1.0.0'
/** Time allowed to dial and upgrade a connection, either side (ms). */
export const DEFAULT_DIAL_TIMEOUT = 30_000
/**
 * Listen address of a host made without one: any free port on loopback (tests, benchmarks).
 * A repository is configured with a fixed port instead (`DEFAULT_LISTEN` of store/repo.ts).
 */
export const EPHEMERAL_LISTEN = ['/ip4/127.0.0.1/tcp/0']

export type HostServices = {
  identify: Identify
  ping: Ping
  dht: KadDHT
}

export interface CreateHostOptions<T extends ServiceMap = Record<string, never>> {
  privateKey?: PrivateKey
  listen?: string[]
  bootstrap?: string[]
  /**
   * LAN discovery by mDNS: `true`/options on, `false` off. Default: on when some listen
   * address is reachable beyond loopback (`mdnsFits`), off for a loopback-only host.
   */
  mdns?: boolean | MdnsOptions
  kadProtocol?: string
  /** Rewrites of outgoing TCP dials (the test network's WAN emulator). */
  dialMap?: DialMap
  /**
   * Fabric key: bound into every noise handshake as its prologue, so a peer without the same
   * key fails the handshake before any other protocol runs.
   */
  fabricKey?: Uint8Array
  /** libp2p metrics, e.g. `prometheusMetrics({ registry })` (default: none). */
  metrics?: Libp2pOptions['metrics']
  /** Extra services (memfabric protocols) to mount next to the built-in ones. */
  services?: { [K in keyof T]: (components: any) => T[K] }
}

/** Create (and start) a libp2p host configured for the fabric. */
export async function createHost<T extends ServiceMap = Record<string, never>> (options: CreateHostOptions<T> = {}): Promise<Libp2p<HostServices & T>> {
  const listen = options.listen ?? EPHEMERAL_LISTEN
  const peerDiscovery: NonNullable<Libp2pOptions['peerDiscovery']> = []
  if (options.bootstrap != null && options.bootstrap.length > 0) peerDiscovery.push(bootstrap({ list: options.bootstrap }))
  const mdns = options.mdns ?? mdnsFits(listen)
  if (mdns !== false) peerDiscovery.push(mdnsDiscovery(mdns === true ? {} : mdns) as any)

  const node = await createLibp2p({
    privateKey: options.privateKey,
    addresses: { listen },
    transports: [options.dialMap != null ? tcpWithDialMap(options.dialMap) : tcp()],
    connectionEncrypters: [noise(options.fabricKey != null ? { prologueBytes: fabricPrologue(options.fabricKey) } : {})],
    streamMuxers: [yamux()],
    peerDiscovery,
    ...(options.metrics != null ? { metrics: options.metrics } : {}),
    connectionManager: {
      // a busy host (or a WAN link) can take seconds to finish a noise handshake
      dialTimeout: DEFAULT_DIAL_TIMEOUT,
      addressDialTimeout: DEFAULT_DIAL_TIMEOUT,
      inboundUpgradeTimeout: DEFAULT_DIAL_TIMEOUT,
      // many peers of one site share a host address in tests and on NAT'd sites
      inboundConnectionThreshold: 10_000,
      maxIncomingPendingConnections: 1000,
      maxConnections: 1000
    },
    connectionMonitor: {
      // busy page transfers must not get a connection killed by a late ping
      abortConnectionOnPingFailure: false
    },
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({
        protocol: options.kadProtocol ?? DEFAULT_KAD_PROTOCOL,
        clientMode: false,
        peerInfoMapper: passthroughMapper
      }),
      ...(options.services ?? {})
    } as any
  })
  return node as unknown as Libp2p<HostServices & T>
}

/**
 * The noise prologue of a fabric. Both sides mix it into the handshake hash, so peers with
 * different keys cannot complete the handshake; unlike a private-network stream cipher it
 * costs nothing per byte.
 */
export function fabricPrologue (fabricKey: Uint8Array): Uint8Array {
  return createHash('sha256').update('memfabric fabric prologue v1\n').update(fabricKey).digest()
}
