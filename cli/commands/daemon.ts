/**
 * `memfabric daemon`: run the node on the repository until Ctrl-C.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { DialMap } from '../../node/transport/dial-map.ts'
import type { AcceptFrom } from '../../node/offer-policy.ts'
import { DEFAULT_PEER_PARTIAL_QUOTA } from '../../node/constants.ts'
import { defineCommand, globalParams, listOption, nonEmptyOption, takePositionals, UsageError } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { formatFields } from '../output.ts'
import { API_TOKEN_FILE } from '../../node/api/token.ts'

export interface DaemonParams extends GlobalParams {
  listen?: string[]
  bootstrap?: string[]
  site?: string
  /** Undefined: the repo config's, else on when listening beyond loopback. */
  mdns?: boolean
  api?: string
  apiToken?: string
  dialMap?: string
  publish: boolean
  metrics: boolean
  allowPeers?: string[]
  acceptFrom?: AcceptFrom
  partialQuota?: number
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }

/** `--peer-quota`: bytes, with an optional K/M/G/T (binary) suffix. */
function parseSize (value: string): number {
  const m = /^(\d+)\s*([kmgt]?)(i?b)?$/i.exec(value)
  if (m == null) throw new UsageError(`invalid --peer-quota '${value}': give bytes, e.g. 4G or 512MiB`)
  return Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()]
}

/** `--accept-from all|none|ID[,ID…]` (repeatable, already split at commas); the node checks the ids. */
function parseAcceptFrom (ids: string[] | undefined): AcceptFrom | undefined {
  if (ids == null) return undefined
  if (ids.length === 1 && (ids[0] === 'all' || ids[0] === 'none')) return ids[0]
  if (ids.length === 0 || ids.includes('all') || ids.includes('none')) throw new UsageError('--accept-from takes all, none, or peer ids')
  return ids
}

export const daemonCommand = defineCommand({
  name: 'daemon',
  description: 'run the node: serve and announce pages, accept migrations, control API on localhost',
  usage: 'daemon [--listen MA…] [--bootstrap MA…] [--mdns | --no-mdns] [--site NAME] [--api MA | --api-port N]',
  details: 'Joins the fabric, announces every page the repository holds in the DHT, serves pages to peers and accepts migrations. CLI commands on the same repository go through the daemon\'s control API (its URL is written to <repo>/api, the token every caller must send to <repo>/api.token, readable only by this user). The first Ctrl-C stops cleanly, a second forces exit.',
  options: {
    listen: { type: 'string', multiple: true, valueName: 'MA', description: 'libp2p listen address', defaultText: 'the repo config\'s' },
    bootstrap: { type: 'string', multiple: true, valueName: 'MA', description: 'peer to join the fabric through (with /p2p/ID)', defaultText: 'the repo config\'s' },
    site: { type: 'string', valueName: 'NAME', description: 'site label of this host', defaultText: 'the repo config\'s' },
    mdns: { type: 'boolean', description: 'find and connect fabric peers on the LAN by mDNS (they still need the fabric key)', defaultText: 'the repo config\'s, else on when listening beyond loopback' },
    'no-mdns': { type: 'boolean', description: 'no mDNS discovery (bootstrap peers only)' },
    api: { type: 'string', valueName: 'MA', description: 'control API address', defaultText: 'the repo config\'s (/ip4/127.0.0.1/tcp/5001)' },
    'api-port': { type: 'string', valueName: 'N', description: 'control API port on 127.0.0.1 (0 picks a free one)' },
    'api-token': { type: 'string', valueName: 'TOKEN', description: 'bearer token the control API requires (needed beyond loopback; written to <repo>/api.token)', env: 'MEMFABRIC_API_TOKEN' },
    'dial-map': { type: 'string', valueName: 'FILE', description: 'JSON {"ip:port": "ip:port"} of outgoing dial rewrites (test network WAN emulation)' },
    'no-publish': { type: 'boolean', description: 'do not announce held pages in the DHT' },
    metrics: { type: 'boolean', description: 'serve Prometheus metrics at <api>/metrics (libp2p\'s and memfabric\'s)' },
    'allow-peer': { type: 'string', multiple: true, valueName: 'ID', description: 'only this peer (repeat for more) may fetch pages and manifest blocks from this host', defaultText: 'every fabric member' },
    'accept-from': { type: 'string', multiple: true, valueName: 'PEER[,PEER…]', description: 'accept migrations offered by these peers only (or all, none)', defaultText: 'all: every fabric member' },
    'peer-quota': { type: 'string', valueName: 'SIZE', description: 'bytes of partial images one offering peer may have here (e.g. 4G)', defaultText: `${DEFAULT_PEER_PARTIAL_QUOTA / 1024 ** 3}G` }
  },
  examples: [
    { command: 'memfabric daemon --site paris --listen /ip4/0.0.0.0/tcp/4001' },
    { command: 'memfabric daemon --bootstrap /ip4/10.0.0.5/tcp/4001/p2p/12D3KooW...' },
    { command: 'memfabric daemon --listen /ip4/0.0.0.0/tcp/4001 --no-mdns', description: 'reachable on the LAN, but join through bootstrap peers only' },
    { command: 'memfabric daemon --metrics', description: 'also serve Prometheus metrics at http://127.0.0.1:5001/metrics' }
  ],
  handlerInit (args, env): DaemonParams {
    takePositionals(args, [])
    const port = nonEmptyOption(args, 'api-port')
    let api = nonEmptyOption(args, 'api')
    if (port !== undefined) {
      if (api !== undefined) throw new UsageError('give --api or --api-port, not both')
      if (!/^\d+$/.test(port) || Number(port) > 65535) throw new UsageError(`invalid --api-port '${port}'`)
      api = `/ip4/127.0.0.1/tcp/${port}`
    }
    if (args.values.mdns === true && args.values['no-mdns'] === true) throw new UsageError('give --mdns or --no-mdns, not both')
    const quota = nonEmptyOption(args, 'peer-quota')
    return {
      ...globalParams(args, env),
      mdns: args.values.mdns === true ? true : args.values['no-mdns'] === true ? false : undefined,
      listen: listOption(args, 'listen'),
      bootstrap: listOption(args, 'bootstrap'),
      site: nonEmptyOption(args, 'site'),
      api,
      apiToken: nonEmptyOption(args, 'api-token') ?? (env.MEMFABRIC_API_TOKEN !== '' ? env.MEMFABRIC_API_TOKEN : undefined),
      dialMap: nonEmptyOption(args, 'dial-map'),
      publish: args.values['no-publish'] !== true,
      metrics: args.values.metrics === true,
      allowPeers: listOption(args, 'allow-peer'),
      acceptFrom: parseAcceptFrom(listOption(args, 'accept-from')),
      partialQuota: quota === undefined ? undefined : parseSize(quota)
    }
  },
  async handler (params, ctx) {
    let dialMap: DialMap | undefined
    if (params.dialMap !== undefined) {
      try {
        dialMap = JSON.parse(await readFile(params.dialMap, 'utf8'))
      } catch (err: any) {
        throw new UsageError(`cannot read --dial-map ${params.dialMap}: ${err.message}`)
      }
    }
    // libp2p is heavy to load: only the daemon command pays for it
    const { Daemon } = await import('../../node/daemon.ts')
    const daemon = await Daemon.create({
      repo: params.repo,
      listen: params.listen,
      bootstrap: params.bootstrap,
      site: params.site,
      mdns: params.mdns,
      api: params.api,
      apiToken: params.apiToken,
      dialMap,
      publish: params.publish,
      metrics: params.metrics,
      allowPeers: params.allowPeers,
      acceptFrom: params.acceptFrom,
      partialQuota: params.partialQuota
    })
    const addresses = daemon.node.libp2p.getMultiaddrs().map(String)
    if (params.json) {
      ctx.printJson({ peerId: daemon.node.peerId.toString(), site: daemon.node.site, addresses, api: daemon.apiUrl })
    } else {
      ctx.print('daemon ready')
      ctx.print(formatFields([
        ['peer id', daemon.node.peerId.toString()],
        ['site', daemon.node.site],
        ['api', daemon.apiUrl],
        // the token only on a terminal: a service manager's log is read by more people than the repository
        ['status page', ctx.stdout.isTTY === true ? `${daemon.apiUrl}/#token=${daemon.apiToken}` : `${daemon.apiUrl}/#token=… (the token is in ${join(daemon.repo.path, API_TOKEN_FILE)})`],
        ...(daemon.metrics != null ? [['metrics', daemon.apiUrl + '/metrics'] as [string, string]] : []),
        ...addresses.map((a, i): [string, string] => [i === 0 ? 'listening' : '', a])
      ]))
    }
    await new Promise<void>(resolve => {
      if (ctx.signal.aborted) resolve()
      ctx.signal.addEventListener('abort', () => { resolve() }, { once: true })
    })
    await daemon.stop()
    ctx.warn('daemon stopped')
    return 0
  }
})
