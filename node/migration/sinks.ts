/** Where verified items of a pull go: pages into the store's page log, manifest blocks into its block store. */
import type { CID } from 'multiformats/cid'
import type { Page } from '../../store/index.ts'
import type { PullContext } from './context.ts'
import type { Tier } from './index.ts'

/** Where verified items go; `tier` says where they came from. */
export type Sink = (items: Array<{ cid: CID, bytes: Uint8Array }>, tier: Tier) => Promise<void>

/** Takes one verified item. */
export type Take = (cid: CID, bytes: Uint8Array) => Promise<void>

/**
 * Whether pages fetched from `tier` are announced at once. A page from a same-site peer is
 * already on record as held in this site (presence queries find this node too), so announcing
 * it again would only send records across sites; the node's periodic republish lists it.
 */
function announces (tier: Tier): boolean {
  return tier !== 'site'
}

export function pageSink ({ deps, options, figures }: PullContext): Sink {
  return async (items, tier) => {
    // the page client verified every page against its CID on arrival
    await figures.timeline.time('store', async () => deps.store.putMany(items as Page[], { verified: true, announce: announces(tier), signal: options.signal }))
  }
}

export function blockSink (ctx: PullContext): Sink {
  const take = blockStorer(ctx)
  return async (items) => {
    for (const { cid, bytes } of items) await take(cid, bytes)
  }
}

export function blockStorer ({ deps, options }: PullContext): Take {
  return async (cid, bytes) => { await deps.store.putBlock(cid, bytes, { signal: options.signal }) }
}
