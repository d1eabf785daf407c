import { stat } from 'node:fs/promises'
import { basename, isAbsolute } from 'node:path'
import { CID } from 'multiformats/cid'
import { InvalidRefError } from '../../store/errors.ts'
import { LocalApi } from './local.ts'
import type { MemfabricNode } from '../node.ts'
import { migrateLive } from '../migration/live.ts'
import type { MigrationProgress } from '../migration/index.ts'
import type { MigrateOptions, MigrationSummary, NodeIdentity, PeerSummary, ProgressOptions } from './index.ts'

/** The api a daemon serves: the store operations of LocalApi plus the network. */
export class NodeApi extends LocalApi {
  override readonly online = true
  readonly node: MemfabricNode
  private readonly apiUrl?: () => string

  constructor (node: MemfabricNode, apiUrl?: () => string) {
    super(node.repo)
    this.node = node
    this.apiUrl = apiUrl
  }

  override async id (): Promise<NodeIdentity> {
    return {
      peerId: this.node.peerId.toString(),
      site: this.node.site,
      addresses: this.node.libp2p.getMultiaddrs().map(String),
      api: this.apiUrl?.()
    }
  }

  override async peers (): Promise<PeerSummary[]> {
    return this.node.peers().map(p => ({
      peerId: p.peerId.toString(),
      site: p.site,
      rttMs: p.rttMs,
      addresses: this.node.libp2p.getConnections(p.peerId).map(c => c.remoteAddr.toString()),
      connected: true
    }))
  }

  override async providers (cid: string, options: { signal?: AbortSignal } = {}): Promise<PeerSummary[]> {
    const parsed = parseCid(cid)
    const found = await this.node.libp2p.services.providers.findProviders([parsed], options)
    const peers = found.get(parsed.toString()) ?? []
    return peers.map(peer => {
      const holder = this.node.describe(peer)
      return {
        peerId: peer.toString(),
        site: holder.site,
        rttMs: holder.rttMs,
        addresses: this.node.libp2p.getConnections(peer).map(c => c.remoteAddr.toString()),
        connected: this.node.libp2p.getConnections(peer).length > 0
      }
    })
  }

  override async migrate (ref: string, to: string, options: ProgressOptions & MigrateOptions = {}): Promise<MigrationSummary> {
    const { signal } = options
    const onProgress = options.onProgress as ((p: MigrationProgress) => void) | undefined
    // only an absolute REF is a file: a relative one would resolve in the daemon's working
    // directory, which means nothing to the caller (the CLI resolves its paths before sending)
    const file = isAbsolute(ref) && await isFile(ref)
    if (options.live === true) {
      if (!file) throw new InvalidRefError(`--live needs the absolute path of the running VM's RAM file; '${ref}' is not one`)
      const name = options.name ?? basename(ref)
      const result = await migrateLive(ref, {
        store: this.repo.store,
        signal,
        minDirtyPages: options.minDirtyPages,
        maxRounds: options.maxRounds,
        pause: options.pause,
        offer: async (root, round, previous, final) => this.node.offer(to, {
          root, round, previous, name: final ? name : undefined, out: final ? options.out : undefined
        }, { signal, onProgress })
      })
      await this.repo.store.pin(CID.parse(result.rounds[result.rounds.length - 1].root), { name, signal })
      return {
        ...result.final,
        rounds: result.rounds.length,
        roundsDetail: result.rounds,
        downtimeMs: result.downtimeMs
      }
    }
    let root: CID
    let name = options.name
    if (file) {
      name ??= basename(ref)
      root = (await this.repo.store.importImage(ref, { name, signal })).root
    } else {
      root = await this.repo.store.resolve(ref, { signal })
      if (name == null) {
        const info = await this.repo.store.inspect(root, { signal })
        name = info.names.includes(ref) ? ref : info.names[0]
      }
    }
    return await this.node.offer(to, { root, name, out: options.out }, { signal, onProgress })
  }

  override async pull (root: string, from: string, options: ProgressOptions & { name?: string, out?: string } = {}): Promise<MigrationSummary> {
    return await this.node.pull({
      root: parseCid(root),
      source: from,
      name: options.name,
      out: options.out,
      signal: options.signal,
      onProgress: options.onProgress as ((p: MigrationProgress) => void) | undefined
    })
  }
}

function parseCid (value: string): CID {
  try {
    return CID.parse(value)
  } catch {
    throw new InvalidRefError(`'${value}' is not a valid CID`)
  }
}

async function isFile (path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile()
  } catch {
    return false
  }
}
