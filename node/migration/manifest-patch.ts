/**
 * Rebuild manifest chunks instead of fetching them across sites: the source says how the image
 * differs from an older image (its basis, basis.ts); when the own store or a same-site peer has
 * that image's manifest, the chunks are cut again from its slots with the differences applied.
 */
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import type { Manifest } from '../../store/index.ts'
import type { ManifestPatch } from '../../protocols/pages/index.ts'
import { ChunkCutter, bufferOf } from './chunk-cutter.ts'
import type { PullContext } from './context.ts'
import { absentBlocks, blocksFromSite } from './manifest-fetch.ts'

const log = logger('memfabric:migration')

export interface PatchOutcome {
  /** Chunks still missing. */
  still: CID[]
  /** The older image the manifest was rebuilt from: its slots are the reference pages of deltas. */
  basis?: CID
}

/**
 * Ask the source for the manifest patch of `manifest` and rebuild the chunks among `missing`
 * from the basis it names. Only chunks whose CID the root lists are kept, so a wrong patch
 * costs a fetch, never a wrong manifest.
 */
export async function rebuildFromPatch (ctx: PullContext, manifest: Manifest, missing: CID[]): Promise<PatchOutcome> {
  const { deps, options, figures } = ctx
  const { store } = deps
  const signal = options.signal
  let patch: ManifestPatch | undefined
  try {
    // transfers are bounded by the exchange's idle timeout (no frame for 30 s), not a deadline
    // that cuts off one still making progress on a loaded host
    const answer = await deps.manifestPatch(options.source, options.root, { signal })
    figures.manifestAnswer(answer.wireBytes)
    patch = answer.patch
  } catch (err: any) {
    signal?.throwIfAborted()
    log.error('source sent no manifest patch - %e', err)
  }
  if (patch == null) return { still: missing }
  const basis = patch.basis
  let rebuilt: CID | undefined
  try {
    if (!await store.hasBlock(basis, { signal })) await blocksFromSite(ctx, [basis])
    const old = await store.readManifest(basis, { signal })
    if (old.pages !== manifest.pages) return { still: missing }
    const absent = await absentBlocks(ctx, old.chunks)
    if (absent.length > 0) await blocksFromSite(ctx, absent)
    const cutter = new ChunkCutter(store, manifest, missing, signal)
    const digests = bufferOf(patch.digests)
    let next = 0
    for await (const slot of store.pageSlots(basis, { signal })) {
      if (next < patch.slots.length && patch.slots[next] === slot.index) {
        if (patch.kinds[next] === 0) await cutter.zero()
        else await cutter.digest(digests, next * 32)
        next++
      } else {
        await cutter.slot(slot.cid?.multihash.digest)
      }
    }
    await cutter.flush()
    rebuilt = basis
  } catch (err: any) {
    signal?.throwIfAborted()
    log.error('manifest of %c not rebuilt from basis %c - %e', options.root, basis, err)
  }
  const still = await absentBlocks(ctx, missing)
  figures.rebuilt(missing.length - still.length)
  log('rebuilt %d of %d manifest chunks from basis %c', missing.length - still.length, missing.length, basis)
  return { still, basis: rebuilt }
}
