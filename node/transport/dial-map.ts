/**
 * TCP with a dial map: outgoing connections to some `ip:port` go to another `ip:port` instead.
 *
 * The local test network uses it to route traffic between sites through its WAN emulator
 * while libp2p keeps seeing the peer's real address (identify, DHT records, peer store).
 */
import { tcp } from '@libp2p/tcp'
import type { TCPOptions } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'

/** `{ "127.0.2.1:4001": "127.0.1.254:39411" }` */
export type DialMap = Record<string, string>

export function tcpWithDialMap (dialMap: DialMap, options: TCPOptions = {}): ReturnType<typeof tcp> {
  const factory = tcp(options)
  return (components) => {
    const transport = factory(components)
    // `_connect` opens the socket; `dial` then upgrades it with the original address
    const inner = transport as unknown as { _connect(ma: Multiaddr, opts: unknown): Promise<unknown> }
    const connect = inner._connect.bind(transport)
    inner._connect = async (ma, opts) => connect(rewrite(ma, dialMap), opts)
    return transport
  }
}

function rewrite (ma: Multiaddr, dialMap: DialMap): Multiaddr {
  const parts = ma.getComponents()
  const ip = parts.find(c => c.name === 'ip4' || c.name === 'ip6')
  const port = parts.find(c => c.name === 'tcp')
  if (ip?.value == null || port?.value == null) {
    return ma
  }
  const target = dialMap[`${ip.value}:${port.value}`]
  if (target == null) {
    return ma
  }
  const [host, targetPort] = splitHostPort(target)
  return multiaddr(`/${host.includes(':') ? 'ip6' : 'ip4'}/${host}/tcp/${targetPort}`)
}

function splitHostPort (value: string): [string, string] {
  const i = value.lastIndexOf(':')
  return [value.slice(0, i), value.slice(i + 1)]
}
