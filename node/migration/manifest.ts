/**
 * The manifest stage of a pull: the root first (only the source is known to have it), then the
 * chunk blocks, each way tried in turn on what the ones before left missing:
 * 1. rebuilt from the source's manifest patch and an older image's manifest held in this site
 *    (manifest-patch.ts), when the source is in another site;
 * 2. fetched from same-site peers (chunks shared with images held in this site);
 * 3. rebuilt from the source's thin manifest (manifest-thin.ts), when the source is in another
 *    site and no basis was found;
 * 4. fetched from the source (manifest-fetch.ts).
 */
import type { CID } from 'multiformats/cid'
import type { Manifest } from '../../store/index.ts'
import type { PullContext } from './context.ts'
import { ManifestUnavailableError } from './errors.ts'
import { absentBlocks, blocksFromSite, fetchBlocks } from './manifest-fetch.ts'
import { rebuildFromPatch } from './manifest-patch.ts'
import { rebuildFromThin } from './manifest-thin.ts'
import type { ThinOutcome } from './manifest-thin.ts'

export interface ManifestOutcome {
  /** The older image the manifest was rebuilt from: the page stage sends deltas against its slots. */
  basis?: CID
  /** What the thin manifest's pass did, when it ran. */
  thin?: ThinOutcome
}

/** Get every block of the image's manifest into the own store; throws when the root cannot be read. */
export async function pullManifest (ctx: PullContext): Promise<ManifestOutcome> {
  const { deps, options, figures } = ctx
  const { store } = deps
  const { root, signal } = options
  const sourceElsewhere = (): boolean => deps.describe(options.source).site !== deps.site
  const outcome: ManifestOutcome = {}
  figures.progress('manifest')
  const { timeline } = figures
  if (!await store.hasBlock(root, { signal })) await timeline.time('manifest:fetch', async () => fetchBlocks(ctx, [root]))
  let manifest: Manifest
  try {
    manifest = await store.readManifest(root, { signal })
  } catch (err: any) {
    throw new ManifestUnavailableError(`manifest ${root} could not be read: ${err.message}`, { cause: err })
  }
  let missing = await absentBlocks(ctx, manifest.chunks)
  figures.manifestBlocks(manifest.chunks.length + 1)
  if (missing.length > 0 && sourceElsewhere()) {
    const patched = await timeline.time('manifest:patch', async (span) => { span.roundTrip(); return rebuildFromPatch(ctx, manifest, missing) })
    missing = patched.still
    outcome.basis = patched.basis
  }
  if (missing.length > 0) {
    const asked = missing
    await timeline.time('manifest:site', async () => blocksFromSite(ctx, asked))
    missing = await absentBlocks(ctx, missing)
  }
  if (missing.length > 0 && outcome.basis == null && sourceElsewhere()) {
    const asked = missing
    outcome.thin = await timeline.time('manifest:thin', async () => rebuildFromThin(ctx, manifest, asked))
    missing = outcome.thin.still
  }
  if (missing.length > 0) {
    const asked = missing
    await timeline.time('manifest:fetch', async () => fetchBlocks(ctx, asked))
  }
  return outcome
}
