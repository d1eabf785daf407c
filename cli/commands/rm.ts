/**
 * `memfabric rm REF`: remove a name, or unpin an image (pages go at the next `gc`).
 */
import { defineCommand, withApi, globalParams, takePositionals } from '../command.ts'
import type { GlobalParams } from '../command.ts'

export interface RmParams extends GlobalParams {
  ref: string
}

export const rmCommand = defineCommand({
  name: 'rm',
  description: 'remove an image name, or unpin an image by root CID',
  usage: 'rm REF',
  details: 'Remove the name REF; removing the last name of an image, or giving its root CID, unpins the image. Its pages are reclaimed by the next `memfabric gc`.',
  args: [{ name: 'REF', description: 'image name or root CID' }],
  options: {},
  examples: [
    { command: 'memfabric rm vm1 && memfabric gc' }
  ],
  handlerInit (args, env): RmParams {
    const [ref] = takePositionals(args, ['REF'])
    return { ...globalParams(args, env), ref }
  },
  async handler (params, ctx) {
    return await withApi(ctx, params.repo, async api => {
      const before = await api.inspect(params.ref, { signal: ctx.signal })
      await api.remove(params.ref, { signal: ctx.signal })
      if (params.json) {
        ctx.printJson({ removed: params.ref, root: before.root })
      } else {
        ctx.print(`removed ${params.ref}${params.ref !== before.root ? ` (${before.root})` : ''}`)
      }
      return 0
    })
  }
})
