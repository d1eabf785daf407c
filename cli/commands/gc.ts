/**
 * `memfabric gc`: reclaim pages no image references.
 */
import { defineCommand, withApi, globalParams, takePositionals } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { formatBytes, formatCount } from '../output.ts'

export const gcCommand = defineCommand({
  name: 'gc',
  description: 'reclaim the space of pages no image references',
  usage: 'gc',
  details: 'Remove pages that no pinned image or in-progress import references and compact pack files, so disk space is really freed.',
  options: {},
  examples: [{ command: 'memfabric gc' }],
  handlerInit (args, env): GlobalParams {
    takePositionals(args, [])
    return globalParams(args, env)
  },
  async handler (params, ctx) {
    return await withApi(ctx, params.repo, async api => {
      const result = await api.gc({ signal: ctx.signal })
      if (params.json) {
        ctx.printJson(result)
      } else {
        ctx.print(`removed ${formatCount(result.removedPages)} pages, reclaimed ${formatBytes(result.reclaimedBytes)}`)
      }
      return 0
    })
  }
})
