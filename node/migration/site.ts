/** Same-site peers of a pull, and best-effort fetches from them (manifest blocks, reference pages). */
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import { keyOf } from './cid-key.ts'
import type { PullContext } from './context.ts'
import type { Holder } from './index.ts'
import type { Take } from './sinks.ts'

const log = logger('memfabric:migration')

/**
 * Whether some known peer is neither in this site nor in the source's: only then can a
 * provider lookup find a holder nearer than the source for what this site lacks (a holder in
 * the source's own site is no nearer), so without one the lookup's round trips across the WAN
 * are skipped.
 */
export function thirdSiteKnown ({ deps, options }: PullContext): boolean {
  const sourceSite = deps.describe(options.source).site
  return deps.peers().some(p => p.site !== deps.site && p.site !== sourceSite)
}

/** Same-site peers a migration may ask (not itself, not dropped). */
export function sitePeers ({ deps, figures }: PullContext): Holder[] {
  return deps.peers().filter(p => p.site === deps.site && !p.peerId.equals(deps.self) && !figures.isDropped(p.peerId.toString()))
}

/**
 * Best effort: fetch `cids` (pages or manifest blocks) from same-site peers, each peer asked
 * for what the ones before it did not send, and hand every verified item to `take`. A peer
 * answers "missing" for what it lacks; a second pass runs only when a peer failed (a loaded
 * peer may time out).
 */
export async function fromSite (ctx: PullContext, cids: CID[], take: Take): Promise<void> {
  const { deps, options } = ctx
  const peers = sitePeers(ctx)
  let pending = cids
  for (let pass = 0; pass < 2 && pending.length > 0; pass++) {
    let failed = false
    for (const peer of peers) {
      if (pending.length === 0) break
      const items: Array<{ cid: CID, bytes: Uint8Array }> = []
      try {
        // bounded by the exchange's idle timeout: a deadline cut off reference pages still
        // arriving on a loaded host, and the pull then sent no deltas
        await deps.fetch(peer.peerId, pending, { compress: false, signal: options.signal, onBlock: (cid, bytes) => { items.push({ cid, bytes }) } })
      } catch (err: any) {
        options.signal?.throwIfAborted()
        failed = true
        log.error('fetch from same-site peer %p failed - %e', peer.peerId, err)
      }
      // what arrived verified before a failure is kept
      const got = new Set<string>()
      for (const { cid, bytes } of items) {
        await take(cid, bytes)
        got.add(keyOf(cid))
      }
      pending = pending.filter(cid => !got.has(keyOf(cid)))
    }
    if (!failed) break
  }
}
