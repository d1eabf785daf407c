/** Manifest blocks fetched as they are: by CID from same-site peers, or from the nearest holder (the source). */
import type { CID } from 'multiformats/cid'
import type { PullContext } from './context.ts'
import { fetchAll } from './fetcher.ts'
import { blockSink, blockStorer } from './sinks.ts'
import { fromSite } from './site.ts'

/** The blocks among `cids` the own store lacks. */
export async function absentBlocks ({ deps, options }: PullContext, cids: CID[]): Promise<CID[]> {
  const absent: CID[] = []
  for (const cid of cids) {
    if (!await deps.store.hasBlock(cid, { signal: options.signal })) absent.push(cid)
  }
  return absent
}

/** Best effort: store what same-site peers have of `cids`. */
export async function blocksFromSite (ctx: PullContext, cids: CID[]): Promise<void> {
  await fromSite(ctx, cids, blockStorer(ctx))
}

/** Fetch every block of `cids` from its nearest holder (no DHT: the source is known to hold them); throws when some cannot be had. */
export async function fetchBlocks (ctx: PullContext, cids: CID[]): Promise<void> {
  await fetchAll(ctx, cids, { useDht: false, sink: blockSink(ctx), kind: 'manifest' })
}
