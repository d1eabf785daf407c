/**
 * `memfabric import FILE`: page a raw memory file or ELF core into the store.
 * `memfabric import --car FILE`: take back an image exported as a CAR file, verified.
 */
import { PAGE_SIZE } from '../../store/constants.ts'
import { resolve } from 'node:path'
import { defineCommand, globalParams, nonEmptyOption, takePositionals } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { formatBytes, formatCount, formatFields, formatPercent } from '../output.ts'

export interface ImportParams extends GlobalParams {
  file: string
  name?: string
  /** FILE is a CAR file of an image (`--car FILE`). */
  car: boolean
}

export const importCommand = defineCommand({
  name: 'import',
  description: 'import a VM memory image (raw file or ELF core) into the store',
  usage: 'import FILE [--name NAME] | import --car FILE [--name NAME]',
  details: 'Split FILE into 4 KiB pages named by CID, store the pages not yet held, and pin the image. ELF cores (gcore, dump-guest-memory) are paged per PT_LOAD segment.',
  args: [{ name: 'FILE', description: 'raw memory file (/dev/shm/..., memory-backend-file, dd dump) or ELF core' }],
  options: {
    name: { type: 'string', short: 'n', valueName: 'NAME', description: 'name the image (e.g. vm1, vm1@t2)', defaultText: 'no name; refer to it by root CID' },
    car: { type: 'string', valueName: 'FILE', description: 'import a CAR file written by `export --car`: every block is verified against its CID, nothing is stored if one fails' }
  },
  examples: [
    { command: 'memfabric import /dev/shm/vm1.ram --name vm1' },
    { command: 'memfabric import core.1234 --json', description: 'print root, size, pages, zeroPages, newPages as JSON' },
    { command: 'memfabric import --car vm1.car --name vm1' }
  ],
  handlerInit (args, env): ImportParams {
    const car = nonEmptyOption(args, 'car')
    if (car !== undefined) {
      takePositionals(args, [])
      return { ...globalParams(args, env), file: car, name: nonEmptyOption(args, 'name'), car: true }
    }
    const [file] = takePositionals(args, ['FILE'])
    return { ...globalParams(args, env), file, name: nonEmptyOption(args, 'name'), car: false }
  },
  async handler (params, ctx) {
    const api = await ctx.connect(params.repo)
    const progress = ctx.progress('import', params.json)
    try {
      if (params.car) {
        // absolute: a daemon reads the file from its own working directory
        const r = await api.importCar(resolve(params.file), { name: params.name, signal: ctx.signal, onProgress: u => { progress.update(u) } })
        progress.done()
        if (params.json) {
          ctx.printJson({ ...r, ...(params.name !== undefined ? { name: params.name } : {}) })
        } else {
          ctx.print(`imported ${params.name ?? params.file} ${r.root}`)
          ctx.print(formatFields([
            ['size', `${formatBytes(r.size)} (${formatCount(r.size)} bytes)`],
            ['blocks', `${formatCount(r.blocks)} manifest blocks, every block verified`],
            ['pages', formatCount(r.pages)],
            ['new pages', `${formatCount(r.newPages)} (${formatBytes(r.newPages * PAGE_SIZE)} stored)`]
          ]))
        }
        return 0
      }
      // absolute: a daemon reads the file from its own working directory
      const result = await api.importImage(resolve(params.file), {
        name: params.name,
        signal: ctx.signal,
        onProgress: u => { progress.update(u) }
      })
      progress.done()
      if (params.json) {
        ctx.printJson({ ...result, ...(params.name !== undefined ? { name: params.name } : {}) })
      } else {
        ctx.print(`imported ${params.name ?? params.file} ${result.root}`)
        ctx.print(formatFields([
          ['format', result.format],
          ['size', `${formatBytes(result.size)} (${formatCount(result.size)} bytes)`],
          ['pages', formatCount(result.pages)],
          ['zero pages', `${formatCount(result.zeroPages)} (${formatPercent(result.zeroPages, result.pages)})`],
          ['new pages', `${formatCount(result.newPages)} (${formatBytes(result.newPages * PAGE_SIZE)} stored)`]
        ]))
      }
      return 0
    } finally {
      progress.done()
      await api.close()
    }
  }
})
