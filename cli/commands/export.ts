/**
 * `memfabric export REF --out FILE`: rebuild an image byte for byte (zero pages as holes).
 */
import { resolve } from 'node:path'
import { defineCommand, globalParams, nonEmptyOption, takePositionals, UsageError } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { formatBytes } from '../output.ts'

export interface ExportParams extends GlobalParams {
  ref: string
  out: string
}

export const exportCommand = defineCommand({
  name: 'export',
  description: 'write an image back to a file, byte-identical to what was imported',
  usage: 'export REF --out FILE',
  details: 'Rebuild the image named by REF into FILE. Every page is verified against its CID; zero pages are written as holes (sparse file).',
  args: [{ name: 'REF', description: 'image name or root CID' }],
  options: {
    out: { type: 'string', short: 'o', valueName: 'FILE', description: 'file to write (required)' }
  },
  examples: [
    { command: 'memfabric export vm1 --out /dev/shm/vm1.ram' }
  ],
  handlerInit (args, env): ExportParams {
    const [ref] = takePositionals(args, ['REF'])
    const out = nonEmptyOption(args, 'out')
    if (out === undefined) {
      throw new UsageError('missing option --out FILE')
    }
    return { ...globalParams(args, env), ref, out }
  },
  async handler (params, ctx) {
    const api = await ctx.connect(params.repo)
    const progress = ctx.progress('export', params.json)
    try {
      // absolute: a daemon writes the file from its own working directory
      await api.exportImage(params.ref, resolve(params.out), {
        signal: ctx.signal,
        onProgress: u => { progress.update(u) }
      })
      progress.done()
      const info = await api.inspect(params.ref, { signal: ctx.signal })
      if (params.json) {
        ctx.printJson({ root: info.root, out: params.out, size: info.size })
      } else {
        ctx.print(`exported ${params.ref} (${formatBytes(info.size)}) to ${params.out}`)
      }
      return 0
    } finally {
      progress.done()
      await api.close()
    }
  }
})
