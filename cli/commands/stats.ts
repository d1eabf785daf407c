/**
 * `memfabric stats`: what the store holds and how well it deduplicates.
 */
import { defineCommand, withApi, globalParams, takePositionals } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { formatBytes, formatCount, formatFields, formatRatio } from '../output.ts'

export const statsCommand = defineCommand({
  name: 'stats',
  description: 'show images, logical and stored bytes, dedup ratio',
  usage: 'stats',
  options: {},
  examples: [{ command: 'memfabric stats' }, { command: 'memfabric stats --json' }],
  handlerInit (args, env): GlobalParams {
    takePositionals(args, [])
    return globalParams(args, env)
  },
  async handler (params, ctx) {
    return await withApi(ctx, params.repo, async api => {
      const s = await api.stats({ signal: ctx.signal })
      if (params.json) {
        ctx.printJson(s)
        return 0
      }
      ctx.print(formatFields([
        ['images', formatCount(s.images)],
        ['logical', formatBytes(s.logicalBytes)],
        ['zero pages', formatCount(s.zeroPages)],
        ['distinct pages', formatCount(s.distinctPages)],
        ['stored', formatBytes(s.storedBytes)],
        ['on disk', formatBytes(s.packBytes)],
        ['dedup ratio', s.storedBytes > 0 ? formatRatio(s.dedupRatio) : '-']
      ]))
      return 0
    })
  }
})
