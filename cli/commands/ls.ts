/**
 * `memfabric ls`: the images of the repository.
 */
import { defineCommand, withApi, globalParams, takePositionals } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { formatBytes, formatCount, formatTable, formatTime } from '../output.ts'

export const lsCommand = defineCommand({
  name: 'ls',
  description: 'list images: names, root CID, size, pages',
  usage: 'ls',
  options: {},
  examples: [
    { command: 'memfabric ls' },
    { command: 'memfabric ls --json', description: 'an array of image summaries' }
  ],
  handlerInit (args, env): GlobalParams {
    takePositionals(args, [])
    return globalParams(args, env)
  },
  async handler (params, ctx) {
    return await withApi(ctx, params.repo, async api => {
      const images = await api.list({ signal: ctx.signal })
      if (params.json) {
        ctx.printJson(images)
        return 0
      }
      if (images.length === 0) {
        ctx.print('no images')
        return 0
      }
      ctx.print(formatTable([
        { header: 'NAME' },
        { header: 'ROOT' },
        { header: 'FORMAT' },
        { header: 'SIZE', right: true },
        { header: 'PAGES', right: true },
        { header: 'ZERO', right: true },
        { header: 'DISTINCT', right: true },
        { header: 'STATE' },
        { header: 'CREATED' }
      ], images.map(i => [
        i.names.length > 0 ? i.names.join(',') : '-',
        i.root,
        i.format,
        formatBytes(i.size),
        formatCount(i.pages),
        formatCount(i.zeroPages),
        formatCount(i.distinctPages),
        i.complete ? 'complete' : 'partial',
        formatTime(i.createdAt)
      ])))
      return 0
    })
  }
})
