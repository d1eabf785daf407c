/**
 * `memfabric export REF --out FILE`: rebuild an image byte for byte (zero pages as holes).
 * `memfabric export REF --car FILE`: write it as a CARv1 file for IPFS tools.
 */
import { resolve } from 'node:path'
import { defineCommand, globalParams, nonEmptyOption, takePositionals, UsageError } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { formatBytes } from '../output.ts'

export interface ExportParams extends GlobalParams {
  ref: string
  out?: string
  car?: string
}

export const exportCommand = defineCommand({
  name: 'export',
  description: 'write an image back to a file, byte-identical to what was imported',
  usage: 'export REF --out FILE | --car FILE',
  details: 'Rebuild the image named by REF into FILE. Every page is verified against its CID; zero pages are written as holes (sparse file).',
  args: [{ name: 'REF', description: 'image name or root CID' }],
  options: {
    out: { type: 'string', short: 'o', valueName: 'FILE', description: 'file to write (this or --car is required)' },
    car: { type: 'string', valueName: 'FILE', description: 'write a CARv1 file instead (manifest root as the CAR root, pages as raw blocks), readable by IPFS tools' }
  },
  examples: [
    { command: 'memfabric export vm1 --out /dev/shm/vm1.ram' },
    { command: 'memfabric export vm1 --car vm1.car', description: 'then e.g. `ipfs dag import vm1.car`' }
  ],
  handlerInit (args, env): ExportParams {
    const [ref] = takePositionals(args, ['REF'])
    const out = nonEmptyOption(args, 'out')
    const car = nonEmptyOption(args, 'car')
    if (out === undefined && car === undefined) {
      throw new UsageError('missing option --out FILE')
    }
    if (out !== undefined && car !== undefined) {
      throw new UsageError('give --out or --car, not both')
    }
    return { ...globalParams(args, env), ref, out, car }
  },
  async handler (params, ctx) {
    const api = await ctx.connect(params.repo)
    const progress = ctx.progress('export', params.json)
    try {
      if (params.car !== undefined) {
        // absolute: a daemon writes the file from its own working directory
        const r = await api.exportCar(params.ref, resolve(params.car), {
          signal: ctx.signal,
          onProgress: u => { progress.update(u) }
        })
        progress.done()
        if (params.json) {
          ctx.printJson({ ...r, car: params.car })
        } else {
          ctx.print(`exported ${params.ref} (${formatBytes(r.size)}) to ${params.car}: ${r.blocks} manifest blocks, ${r.pages} pages, root ${r.root}`)
        }
        return 0
      }
      const out = params.out as string
      // absolute: a daemon writes the file from its own working directory
      await api.exportImage(params.ref, resolve(out), {
        signal: ctx.signal,
        onProgress: u => { progress.update(u) }
      })
      progress.done()
      const info = await api.inspect(params.ref, { signal: ctx.signal })
      if (params.json) {
        ctx.printJson({ root: info.root, out, size: info.size })
      } else {
        ctx.print(`exported ${params.ref} (${formatBytes(info.size)}) to ${out}`)
      }
      return 0
    } finally {
      progress.done()
      await api.close()
    }
  }
})
