import type { CID } from 'multiformats/cid'
import type { Page } from '../../store/index.ts'
import { keyOf } from './cid-key.ts'
import type { PullContext } from './context.ts'
import { fromSite } from './site.ts'

/**
 * Reference pages for pages the source sends across sites: the page in the same slot of the
 * basis image, read from the own store or a same-site peer, so the source can send each page
 * compressed against it. `refOf` maps a page key to that basis page.
 */
export async function references (ctx: PullContext, cids: CID[], refOf: Map<string, CID>): Promise<Array<Page | undefined> | undefined> {
  const wanted = new Map<string, CID>()
  for (const cid of cids) {
    const ref = refOf.get(keyOf(cid))
    if (ref != null) wanted.set(keyOf(ref), ref)
  }
  if (wanted.size === 0) return undefined
  const bytesOf = new Map<string, Uint8Array>()
  const refs = [...wanted.values()]
  for await (const { cid, bytes } of ctx.deps.store.getMany(refs, { signal: ctx.options.signal })) {
    if (bytes != null) bytesOf.set(keyOf(cid), bytes)
  }
  const absent = refs.filter(cid => !bytesOf.has(keyOf(cid)))
  if (absent.length > 0) await fromSite(ctx, absent, async (cid, bytes) => { bytesOf.set(keyOf(cid), bytes) })
  ctx.figures.referencePages(bytesOf.size)
  return cids.map(cid => {
    const ref = refOf.get(keyOf(cid))
    const bytes = ref == null ? undefined : bytesOf.get(keyOf(ref))
    return bytes == null ? undefined : { cid: ref!, bytes }
  })
}
