/**
 * `memfabric init`: create a repository (identity key, site, addresses, empty store).
 */
import { multiaddr } from '@multiformats/multiaddr'
import { defineCommand, globalParams, listOption, nonEmptyOption, takePositionals, UsageError } from '../command.ts'
import type { GlobalParams, ParsedArgs } from '../command.ts'
import { formatFields } from '../output.ts'

export interface InitParams extends GlobalParams {
  /** Undefined: the repository's default. */
  site?: string
  listen?: string[]
  bootstrap?: string[]
  /** LAN discovery written to the config; undefined: unset (on when listening beyond loopback). */
  mdns?: boolean
  /** Join the fabric of this key file instead of creating a new fabric. */
  fabricKey?: string
}

/** Check each multiaddr parses; `flag` names the option in the error. */
function multiaddrs (args: ParsedArgs, flag: string): string[] | undefined {
  const list = listOption(args, flag)
  if (list === undefined) {
    return undefined
  }
  for (const ma of list) {
    try {
      multiaddr(ma)
    } catch {
      throw new UsageError(`invalid multiaddr '${ma}' for --${flag}`)
    }
  }
  return list
}

/** The store's repo module, loaded on use: it pulls in level and libp2p crypto (~1 s). */
async function loadRepo (): Promise<typeof import('../../store/repo.ts')> {
  return await import('../../store/repo.ts')
}

export const SITE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

export const initCommand = defineCommand({
  name: 'init',
  description: 'create a repository: identity key, site label, addresses, empty store',
  usage: 'init [--site NAME] [--listen MA...] [--bootstrap MA...] [--mdns | --no-mdns]',
  details: 'Create a new repository directory with a fresh Ed25519 peer identity. Fails if the directory already holds a repository.',
  options: {
    site: { type: 'string', valueName: 'NAME', description: 'site label of this host (letters, digits, . _ -)', defaultText: async () => (await loadRepo()).DEFAULT_SITE },
    listen: { type: 'string', multiple: true, valueName: 'MA', description: 'libp2p listen multiaddr (repeat or comma-separate)', defaultText: async () => (await loadRepo()).DEFAULT_LISTEN.join(',') },
    bootstrap: { type: 'string', multiple: true, valueName: 'MA', description: 'bootstrap peer multiaddr with /p2p/ id (repeat or comma-separate)', defaultText: 'none' },
    mdns: { type: 'boolean', description: 'always find fabric peers on the LAN by mDNS', defaultText: 'on when listening beyond loopback' },
    'no-mdns': { type: 'boolean', description: 'never use mDNS (bootstrap peers only)' },
    'fabric-key': { type: 'string', valueName: 'FILE', description: 'join the fabric of this key (another host\'s <repo>/fabric.key)', defaultText: 'a new fabric key' }
  },
  examples: [
    { command: 'memfabric init', description: 'create ~/.memfabric' },
    { command: 'memfabric init --repo /var/lib/memfabric --site fra1 --listen /ip4/0.0.0.0/tcp/4001', description: 'a host of site fra1' }
  ],
  handlerInit (args, env): InitParams {
    takePositionals(args, [])
    const site = nonEmptyOption(args, 'site')
    if (site !== undefined && !SITE_PATTERN.test(site)) {
      throw new UsageError(`invalid site name '${site}' (use letters, digits, '.', '_', '-', at most 64)`)
    }
    if (args.values.mdns === true && args.values['no-mdns'] === true) throw new UsageError('give --mdns or --no-mdns, not both')
    return {
      ...globalParams(args, env),
      site,
      mdns: args.values.mdns === true ? true : args.values['no-mdns'] === true ? false : undefined,
      listen: multiaddrs(args, 'listen'),
      bootstrap: multiaddrs(args, 'bootstrap'),
      fabricKey: nonEmptyOption(args, 'fabric-key')
    }
  },
  async handler (params, ctx) {
    const { Repo } = await loadRepo()
    const { createFabricKey, readFabricKeyFile, writeRepoFabricKey } = await import('../../node/fabric-key.ts')
    // read the key first: a bad key file must not leave a half-made repository
    const fabricKey = params.fabricKey !== undefined ? await readFabricKeyFile(params.fabricKey) : createFabricKey()
    const repo = await Repo.init(params.repo, {
      site: params.site,
      listen: params.listen,
      bootstrap: params.bootstrap,
      mdns: params.mdns
    })
    const config = repo.config
    await writeRepoFabricKey(repo.path, fabricKey)
    await repo.close()
    const result = {
      repo: params.repo,
      peerId: config.identity.peerId,
      site: config.site,
      listen: config.addresses.listen,
      bootstrap: config.bootstrap
    }
    if (params.json) {
      ctx.printJson(result)
    } else {
      ctx.print(`initialized repository ${params.repo}`)
      ctx.print(formatFields([
        ['peer id', result.peerId],
        ['site', result.site],
        ['listen', result.listen.join(' ')],
        ['bootstrap', result.bootstrap.length > 0 ? result.bootstrap.join(' ') : '-']
      ]))
    }
    return 0
  }
})
