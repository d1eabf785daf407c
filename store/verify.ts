/**
 * Consistency check: every pin's manifest is present and decodes, every page of a complete
 * image is indexed and lies inside its pack, names point at pins, packs are as long as the
 * index says. `deep` also re-hashes every stored page.
 */
import { CID } from 'multiformats/cid'
import type { AbortOptions } from '@libp2p/interface'
import { decodeLocation, packName } from './pack.ts'
import type { VerifyContext } from './internal.ts'
import { digestKey, digestToCid, verifyPage } from './page.ts'
import type { VerifyResult } from './index.ts'

const MAX_PROBLEMS = 1000

export async function verifyStore (store: VerifyContext, options: AbortOptions & { deep?: boolean } = {}): Promise<VerifyResult> {
  const problems: string[] = []
  const problem = (p: string): void => { if (problems.length < MAX_PROBLEMS) problems.push(p) }
  let images = 0
  let pagesChecked = 0
  const fileSizes = new Map<number, number | undefined>()
  for (const [id, e] of store.packs.entries) {
    const size = await store.packs.fileSize(id)
    fileSizes.set(id, size)
    if (size == null) problem(`pack ${packName(id)} is missing`)
    else if (size < e.size) problem(`pack ${packName(id)} has ${size} bytes, the index expects ${e.size}`)
  }
  const pins = new Set<string>()
  for await (const [key, rec] of store.index.pins.iterator()) {
    options.signal?.throwIfAborted()
    images++
    pins.add(key)
    const root = CID.parse(key)
    const complete = rec.state === 'complete'
    try {
      const seen = new Set<string>()
      for await (const slots of store.manifests.slotChunks(root, options)) {
        if (!complete) continue
        const fresh = slots.filter(s => {
          if (s.digest == null) return false
          const k = digestKey(s.digest)
          if (seen.has(k)) return false
          seen.add(k)
          return true
        })
        const locs = await store.pages.lookup(fresh.map(s => s.digest as Uint8Array))
        locs.forEach((loc, i) => {
          pagesChecked++
          const s = fresh[i]
          if (loc == null) {
            problem(`image ${key}: page ${digestToCid(s.digest as Uint8Array).toString()} (offset ${s.offset}) is not in the store`)
            return
          }
          const e = store.packs.entries.get(loc.pack)
          if (e == null) problem(`image ${key}: page ${digestToCid(s.digest as Uint8Array).toString()} points at unknown pack ${loc.pack}`)
          else if (loc.offset + loc.length > e.size) problem(`image ${key}: page ${digestToCid(s.digest as Uint8Array).toString()} lies beyond the end of ${packName(loc.pack)}`)
          else if (loc.length !== s.length) problem(`image ${key}: page ${digestToCid(s.digest as Uint8Array).toString()} is stored with length ${loc.length}, the manifest says ${s.length}`)
        })
      }
    } catch (err: any) {
      if (complete) problem(`image ${key}: manifest unreadable: ${err.message}`)
    }
  }
  for await (const [name, root] of store.index.names.iterator()) {
    if (!pins.has(root)) problem(`name "${name}" points at ${root}, which is not pinned`)
  }
  if (options.deep === true) {
    for await (const [key, value] of store.index.pages.iterator()) {
      options.signal?.throwIfAborted()
      const loc = decodeLocation(value)
      const cid = digestToCid(key)
      const bytes = new Uint8Array(loc.length)
      try {
        await store.pages.readAt(loc, bytes)
        if (!verifyPage(cid, bytes)) problem(`page ${cid.toString()} in ${packName(loc.pack)} at ${loc.offset} does not match its CID`)
      } catch (err: any) {
        problem(`page ${cid.toString()} cannot be read from ${packName(loc.pack)}: ${err.message}`)
      }
      pagesChecked++
    }
  }
  return { ok: problems.length === 0, images, pagesChecked, problems }
}
