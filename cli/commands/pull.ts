/**
 * `memfabric pull ROOT --from PEER`: the destination side of a migration.
 */
import { resolve } from 'node:path'
import { CID } from 'multiformats/cid'
import { InvalidRefError } from '../../store/errors.ts'
import { defineCommand, globalParams, nonEmptyOption, takePositionals, UsageError } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { runMigration } from './migrate.ts'

export interface PullParams extends GlobalParams {
  root: string
  from: string
  name?: string
  out?: string
}

export const pullCommand = defineCommand({
  name: 'pull',
  description: 'fetch an image from a peer, each page from the nearest holder (needs a daemon)',
  usage: 'pull ROOT --from PEER [--name NAME] [--out PATH]',
  details: 'Plans every page: this node\'s store, then peers of its site, then peers elsewhere, and PEER last. Pages are verified against their CIDs. Re-running after an interruption fetches only what is still missing.',
  args: [{ name: 'ROOT', description: 'root CID of the image' }],
  options: {
    from: { type: 'string', valueName: 'PEER', description: 'source: peer id or multiaddr' },
    name: { type: 'string', short: 'n', valueName: 'NAME', description: 'name the pulled image' },
    out: { type: 'string', short: 'o', valueName: 'PATH', description: 'write the memory file here (sparse)' }
  },
  examples: [{ command: 'memfabric pull bafyrei... --from 12D3KooW... --name vm1 --out /dev/shm/vm1.ram' }],
  handlerInit (args, env): PullParams {
    const [root] = takePositionals(args, ['ROOT'])
    try {
      CID.parse(root)
    } catch {
      throw new InvalidRefError(`malformed CID '${root}'`)
    }
    const from = nonEmptyOption(args, 'from')
    if (from === undefined) throw new UsageError('missing --from PEER')
    const out = nonEmptyOption(args, 'out')
    // the daemon may run in another directory
    return { ...globalParams(args, env), root, from, name: nonEmptyOption(args, 'name'), out: out !== undefined ? resolve(out) : undefined }
  },
  async handler (params, ctx) {
    return await runMigration(ctx, params, 'pull', async (api, onProgress) => api.pull(params.root, params.from, {
      name: params.name,
      out: params.out,
      signal: ctx.signal,
      onProgress
    }))
  }
})
