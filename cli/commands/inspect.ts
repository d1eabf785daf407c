/**
 * `memfabric inspect REF`: one image in detail (manifest, extents, chunks).
 */
import { defineCommand, withApi, globalParams, takePositionals } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { formatBytes, formatCount, formatFields, formatPercent, formatTable, formatTime } from '../output.ts'

export interface InspectParams extends GlobalParams {
  ref: string
}

/** Extents listed in full up to this many; beyond, only the count. */
const MAX_EXTENTS_SHOWN = 32

export const inspectCommand = defineCommand({
  name: 'inspect',
  description: 'show one image: root, size, pages, zero pages, extents',
  usage: 'inspect REF',
  args: [{ name: 'REF', description: 'image name or root CID' }],
  options: {},
  examples: [
    { command: 'memfabric inspect vm1' },
    { command: 'memfabric inspect bafyrei... --json' }
  ],
  handlerInit (args, env): InspectParams {
    const [ref] = takePositionals(args, ['REF'])
    return { ...globalParams(args, env), ref }
  },
  async handler (params, ctx) {
    return await withApi(ctx, params.repo, async api => {
      const d = await api.inspect(params.ref, { signal: ctx.signal })
      if (params.json) {
        ctx.printJson(d)
        return 0
      }
      ctx.print(formatFields([
        ['root', d.root],
        ['names', d.names.length > 0 ? d.names.join(', ') : '-'],
        ['format', d.format],
        ['size', `${formatBytes(d.size)} (${formatCount(d.size)} bytes)`],
        ['page size', formatBytes(d.pageSize)],
        ['pages', formatCount(d.pages)],
        ['zero pages', `${formatCount(d.zeroPages)} (${formatPercent(d.zeroPages, d.pages)})`],
        ['distinct pages', formatCount(d.distinctPages)],
        ['chunks', formatCount(d.chunks)],
        ['state', d.complete ? 'complete' : 'partial (pages still arriving)'],
        ['created', formatTime(d.createdAt)],
        ['extents', formatCount(d.extents.length)]
      ]))
      if (d.extents.length > 1) {
        const shown = d.extents.slice(0, MAX_EXTENTS_SHOWN)
        ctx.print(formatTable(
          [{ header: '  OFFSET', right: true }, { header: 'LENGTH', right: true }, { header: 'SIZE', right: true }],
          shown.map(e => [`  ${e.offset}`, String(e.length), formatBytes(e.length)])
        ))
        if (d.extents.length > shown.length) {
          ctx.print(`  ... ${d.extents.length - shown.length} more (see --json)`)
        }
      }
      return 0
    })
  }
})
