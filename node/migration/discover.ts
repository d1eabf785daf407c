/**
 * Who may hold what a pull lacks: same-site peers answer a presence query for pages, then a
 * batched DHT provider lookup covers what no same-site peer has. The result feeds the planner
 * (planner.ts); the source is not listed, it is the holder of last resort.
 */
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import { keyOf } from './cid-key.ts'
import { DEFAULT_DISCOVERY_TIMEOUT } from './constants.ts'
import type { PullContext } from './context.ts'
import type { FetchKind } from './figures.ts'
import { sortCandidates, toCandidate } from './planner.ts'
import type { Candidate } from './planner.ts'
import { sitePeers } from './site.ts'

const log = logger('memfabric:migration')

export interface DiscoverOptions {
  kind: FetchKind
  /** Ask the DHT for providers of what same-site peers do not have. */
  useDht: boolean
}

/** Candidate holders per CID key, best first: same-site peers that say they hold it, then DHT providers. */
export async function discover (ctx: PullContext, cids: CID[], opts: DiscoverOptions): Promise<Map<string, Candidate[]>> {
  const { deps, at } = ctx
  const candidates = new Map<string, Candidate[]>()
  const add = (key: string, holder: Candidate): void => {
    const list = candidates.get(key)
    if (list == null) candidates.set(key, [holder])
    else if (!list.includes(holder)) list.push(holder)
  }
  const keys = cids.map(keyOf)
  const site = sitePeers(ctx).filter(p => !p.peerId.equals(at.source)).map(p => toCandidate(p, at))
  const span = opts.kind === 'pages' ? ctx.figures.timeline.begin('plan') : undefined
  try {

  // presence covers pages; manifest blocks held in the site were fetched from there already
  await Promise.all((opts.kind === 'pages' ? site : []).map(async peer => {
    try {
      const bits = await deps.presence(peer.holder.peerId, cids, { signal: withTimeout(ctx, DEFAULT_DISCOVERY_TIMEOUT) })
      for (let i = 0; i < cids.length; i++) if (bits[i]) add(keys[i], peer)
    } catch (err: any) {
      log('presence query to %p failed - %e', peer.holder.peerId, err)
    }
  }))

  const unresolved: number[] = []
  for (let i = 0; i < cids.length; i++) if (!candidates.has(keys[i])) unresolved.push(i)
  if (opts.useDht && unresolved.length > 0) {
    try {
      const found = await deps.findProviders(unresolved.map(i => cids[i]), { signal: withTimeout(ctx, DEFAULT_DISCOVERY_TIMEOUT) })
      const known = new Map<string, Candidate>()
      unresolved.forEach((index, j) => {
        for (const peer of found[j] ?? []) {
          if (peer.equals(deps.self) || peer.equals(at.source)) continue
          const id = peer.toString()
          let holder = known.get(id)
          if (holder == null) {
            holder = toCandidate(deps.describe(peer), at)
            known.set(id, holder)
          }
          add(keys[index], holder)
        }
      })
    } catch (err: any) {
      log('provider lookup failed - %e', err)
    }
  }
  } finally {
    span?.end()
  }
  sortCandidates(candidates)
  return candidates
}

/** The pull's signal, bounded to `timeout` ms. */
function withTimeout ({ options }: PullContext, timeout: number): AbortSignal {
  const timer = AbortSignal.timeout(timeout)
  return options.signal == null ? timer : AbortSignal.any([timer, options.signal])
}
