/**
 * `memfabric id`: this node's peer id, site and addresses.
 */
import { defineCommand, withApi, globalParams, takePositionals } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { formatFields } from '../output.ts'

export const idCommand = defineCommand({
  name: 'id',
  description: 'show the peer id, site and addresses of this node',
  usage: 'id',
  details: 'Without a running daemon, shows the identity from the repository config (no addresses).',
  options: {},
  examples: [{ command: 'memfabric id' }],
  handlerInit (args, env): GlobalParams {
    takePositionals(args, [])
    return globalParams(args, env)
  },
  async handler (params, ctx) {
    return await withApi(ctx, params.repo, async api => {
      const id = await api.id({ signal: ctx.signal })
      if (params.json) {
        ctx.printJson(id)
        return 0
      }
      const fields: Array<[string, string]> = [
        ['peer id', id.peerId],
        ['site', id.site],
        ['daemon', api.online ? (id.api ?? 'running') : 'not running']
      ]
      if (id.addresses.length > 0) {
        fields.push(['addresses', id.addresses[0]], ...id.addresses.slice(1).map((a): [string, string] => ['', a]))
      }
      ctx.print(formatFields(fields))
      return 0
    })
  }
})
