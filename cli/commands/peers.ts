/**
 * `memfabric peers`: the peers the daemon knows, with site and RTT.
 */
import { defineCommand, withApi, globalParams, takePositionals } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { formatPeers } from './providers.ts'

export const peersCommand = defineCommand({
  name: 'peers',
  description: 'list known peers with site and round-trip time (needs a daemon)',
  usage: 'peers',
  options: {},
  examples: [{ command: 'memfabric peers' }],
  handlerInit (args, env): GlobalParams {
    takePositionals(args, [])
    return globalParams(args, env)
  },
  async handler (params, ctx) {
    return await withApi(ctx, params.repo, async api => {
      const peers = await api.peers({ signal: ctx.signal })
      if (params.json) {
        ctx.printJson(peers)
      } else {
        ctx.print(peers.length > 0 ? formatPeers(peers) : 'no peers')
      }
      return 0
    })
  }
})
