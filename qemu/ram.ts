/**
 * The guest's RAM file: finding the shared memory-backend-file a QEMU maps, and installing a
 * delivered image into it in place.
 */
import { open } from 'node:fs/promises'
import { resolve } from 'node:path'
import { logger } from '@libp2p/logger'
import type { QmpClient } from './qmp.ts'
import { DEFAULT_INSTALL_CHUNK, INSTALL_PAGE_SIZE } from './constants.ts'
import { GuestRamError } from './errors.ts'

const log = logger('memfabric:qemu')

/**
 * The shared file-backed RAM a QEMU maps: checks `expected` when given, else finds the only one.
 * Private (`share=off`) RAM is refused: the guest's writes would never reach the file.
 */
export async function sharedRamFile (qmp: QmpClient, expected: string | undefined, side: string, options: { signal?: AbortSignal } = {}): Promise<string> {
  const objects = await qmp.execute<Array<{ name: string, type: string }>>('qom-list', { path: '/objects' }, options)
  const files: Array<{ id: string, path: string, share: boolean }> = []
  for (const o of objects) {
    if (o.type !== 'child<memory-backend-file>') continue
    const path = await qmp.execute<string>('qom-get', { path: `/objects/${o.name}`, property: 'mem-path' }, options)
    const share = await qmp.execute<boolean>('qom-get', { path: `/objects/${o.name}`, property: 'share' }, options)
    files.push({ id: o.name, path, share })
  }
  const match = expected !== undefined
    ? files.find(f => resolve(f.path) === resolve(expected))
    : (files.length === 1 ? files[0] : undefined)
  if (match == null) {
    const seen = files.map(f => f.path).join(', ')
    throw new GuestRamError(expected !== undefined
      ? `the ${side} QEMU does not map ${expected} as guest RAM (its memory-backend-file paths: ${seen === '' ? 'none' : seen})`
      : `cannot tell the ${side} QEMU's RAM file: ${files.length === 0 ? 'no memory-backend-file (start it with -object memory-backend-file,…,share=on -machine memory-backend=…)' : `several (${seen}); name it`}`)
  }
  if (!match.share) throw new GuestRamError(`the ${side} QEMU maps ${match.path} with share=off: guest writes never reach the file; start it with share=on`)
  return match.path
}

/**
 * Copy the staged image into the destination's RAM file in place (the file QEMU maps with
 * share=on: replacing it would leave QEMU with the old inode). Writes only the pages that
 * differ; returns how many.
 */
export async function installRam (staged: string, target: string, options: { signal?: AbortSignal, chunk?: number } = {}): Promise<number> {
  const chunk = options.chunk ?? DEFAULT_INSTALL_CHUNK
  const [from, size] = await openSized(staged, 'r')
  let written = 0
  try {
    const [to, targetSize] = await openSized(target, 'r+')
    try {
      if (targetSize !== size) throw new GuestRamError(`the destination RAM file ${target} is ${targetSize} bytes, the migrated image ${size}: were both QEMUs started with the same -m / size=?`)
      const a = Buffer.allocUnsafeSlow(chunk)
      const b = Buffer.allocUnsafeSlow(chunk)
      for (let offset = 0; offset < size; offset += chunk) {
        options.signal?.throwIfAborted()
        const n = Math.min(chunk, size - offset)
        await readFull(from, a, n, offset)
        await readFull(to, b, n, offset)
        let run = -1
        for (let p = 0; p <= n; p += INSTALL_PAGE_SIZE) {
          const end = Math.min(p + INSTALL_PAGE_SIZE, n)
          const differs = p < n && a.compare(b, p, end, p, end) !== 0
          if (differs) {
            written++
            if (run < 0) run = p
          } else if (run >= 0) {
            await to.write(a, run, p - run, offset + run)
            run = -1
          }
        }
      }
      await to.datasync()
    } finally {
      await to.close()
    }
  } finally {
    await from.close()
  }
  log('installed %d changed pages into %s', written, target)
  return written
}

async function openSized (path: string, flags: string): Promise<[Awaited<ReturnType<typeof open>>, number]> {
  try {
    const fh = await open(path, flags)
    return [fh, (await fh.stat()).size]
  } catch (err: any) {
    throw new GuestRamError(`cannot open ${path}: ${err.code ?? err.message}`, { cause: err })
  }
}

async function readFull (fh: Awaited<ReturnType<typeof open>>, buf: Buffer, length: number, position: number): Promise<void> {
  let got = 0
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, position + got)
    if (bytesRead === 0) throw new GuestRamError(`short read at ${position + got}`)
    got += bytesRead
  }
}

