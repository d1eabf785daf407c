/**
 * Which `Host` and `Origin` headers the control API answers: its own address, exactly.
 *
 * DNS rebinding points a name the attacker controls (`127.attacker.example`) at 127.0.0.1, so
 * the browser sends that name as `Host` and treats the answer as the attacker's origin. The
 * defence is to answer only names that cannot be rebound: the literal loopback addresses and
 * `localhost` (browsers resolve it to loopback themselves), with the API's port, compared as
 * whole strings — nothing prefix-based.
 */
import { isIP } from 'node:net'

/** A predicate over `Host` header values. */
export type HostCheck = (host: string | undefined) => boolean

const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]']

export function isLoopbackHost (host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'))
}

function isWildcard (host: string): boolean {
  return host === '0.0.0.0' || host === '::'
}

/** `host` as it appears in a URL authority (IPv6 in brackets). */
export function urlHost (host: string): string {
  return host.includes(':') ? `[${host}]` : host
}

/**
 * The check for an API bound to `bindHost:port`:
 * - loopback: `127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT` and the bound address itself;
 * - one non-loopback address or name: that address with the port;
 * - a wildcard (`0.0.0.0`, `::`): the loopback names, or any IP literal with the port (a
 *   rebinding attack always arrives under a name, never an IP literal).
 * Port 80 may be left out, as browsers do.
 */
export function hostCheck (bindHost: string, port: number): HostCheck {
  const exact = new Set<string>()
  const add = (name: string): void => {
    exact.add(`${name}:${port}`)
    if (port === 80) exact.add(name)
  }
  if (isLoopbackHost(bindHost) || isWildcard(bindHost)) LOOPBACK_NAMES.forEach(add)
  if (!isWildcard(bindHost)) add(urlHost(bindHost.toLowerCase()))
  return (header) => {
    if (header == null) return false
    const host = header.toLowerCase()
    if (exact.has(host)) return true
    if (!isWildcard(bindHost)) return false
    const m = /^\[([0-9a-f:.]+)\]:(\d+)$/.exec(host) ?? /^([0-9.]+):(\d+)$/.exec(host)
    return m != null && isIP(m[1]) !== 0 && Number(m[2]) === port
  }
}

/** An `Origin` header is acceptable when absent or exactly this request's own (checked) host. */
export function originMatches (origin: string | undefined, host: string | undefined): boolean {
  return origin == null || (host != null && origin.toLowerCase() === `http://${host.toLowerCase()}`)
}
