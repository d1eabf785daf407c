/**
 * `memfabric verify`: the repository's consistency check.
 */
import { defineCommand, withApi, globalParams, takePositionals } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { plural } from '../output.ts'

export interface VerifyParams extends GlobalParams {
  deep: boolean
}

export const verifyCommand = defineCommand({
  name: 'verify',
  description: 'check the repository is consistent (exit 1 on problems)',
  usage: 'verify [--deep]',
  details: 'Check indexes, manifests and reference counts against each other. With --deep, also read every stored page and check it against its CID.',
  options: {
    deep: { type: 'boolean', description: 'also re-hash every stored page', defaultText: 'off' }
  },
  examples: [{ command: 'memfabric verify' }, { command: 'memfabric verify --deep --json' }],
  handlerInit (args, env): VerifyParams {
    takePositionals(args, [])
    return { ...globalParams(args, env), deep: args.values.deep === true }
  },
  async handler (params, ctx) {
    return await withApi(ctx, params.repo, async api => {
      const r = await api.verify({ signal: ctx.signal, deep: params.deep })
      if (params.json) {
        ctx.printJson(r)
      } else if (r.ok) {
        ctx.print(`ok: ${plural(r.images, 'image')}, ${plural(r.pagesChecked, 'page')} checked`)
      } else {
        for (const p of r.problems) {
          ctx.print(p)
        }
      }
      if (!r.ok) {
        ctx.warn(`verify found ${plural(r.problems.length, 'problem')}`)
        return 1
      }
      return 0
    })
  }
})
