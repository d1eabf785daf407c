/**
 * `memfabric providers CID`: the peers that announce a page.
 */
import { CID } from 'multiformats/cid'
import type { PeerSummary } from '../../node/api/index.ts'
import { InvalidRefError } from '../../store/errors.ts'
import { defineCommand, withApi, globalParams, takePositionals } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { formatTable } from '../output.ts'

export interface ProvidersParams extends GlobalParams {
  cid: string
}

/** Peers as a table: id, site, RTT, connected, first address. */
export function formatPeers (peers: PeerSummary[]): string {
  return formatTable([
    { header: 'PEER' },
    { header: 'SITE' },
    { header: 'RTT', right: true },
    { header: 'CONN' },
    { header: 'ADDRESS' }
  ], peers.map(p => [
    p.peerId,
    p.site ?? '-',
    p.rttMs !== undefined ? `${p.rttMs.toFixed(1)} ms` : '-',
    p.connected ? 'yes' : 'no',
    p.addresses[0] ?? '-'
  ]))
}

export const providersCommand = defineCommand({
  name: 'providers',
  description: 'find the peers that hold a page (needs a daemon)',
  usage: 'providers CID',
  args: [{ name: 'CID', description: 'page CID (CIDv1, raw, sha2-256)' }],
  options: {},
  examples: [{ command: 'memfabric providers bafkrei...' }],
  handlerInit (args, env): ProvidersParams {
    const [cid] = takePositionals(args, ['CID'])
    let parsed: CID
    try {
      parsed = CID.parse(cid)
    } catch {
      throw new InvalidRefError(`malformed CID '${cid}'`)
    }
    return { ...globalParams(args, env), cid: parsed.toString() }
  },
  async handler (params, ctx) {
    return await withApi(ctx, params.repo, async api => {
      const peers = await api.providers(params.cid, { signal: ctx.signal })
      if (params.json) {
        ctx.printJson(peers)
      } else {
        ctx.print(peers.length > 0 ? formatPeers(peers) : `no providers for ${params.cid}`)
      }
      return 0
    })
  }
})
