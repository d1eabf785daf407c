/**
 * A pull, stage by stage: the manifest (manifest.ts), then the pages (page-walk.ts), then pin
 * and export. Each stage takes the pull's context (deps, options, figures) and what the stage
 * before it found; where a migration gets each page is decided in planner.ts.
 */
import type { MigrationReport, PullDeps, PullOptions } from './index.ts'
import type { PullContext } from './context.ts'
import { MigrationFigures } from './figures.ts'
import { pullManifest } from './manifest.ts'
import { PageWalk, countSlots } from './page-walk.ts'

/**
 * Pull an image into the local store from the nearest holders and pin it. Re-running after an
 * interruption fetches only the pages still missing.
 */
export async function pullImage (deps: PullDeps, options: PullOptions): Promise<MigrationReport> {
  const started = performance.now()
  const { store } = deps
  const { root, signal } = options
  const figures = new MigrationFigures(options.onProgress)
  const ctx: PullContext = { deps, options, figures, at: { site: deps.site, source: options.source } }

  const { basis, thin } = await pullManifest(ctx)
  let manifest
  let distinctPages: number
  try {
    manifest = await store.readManifest(root, { signal })
    figures.totalSlots = manifest.pages
    // protects what has arrived from gc, and lets a re-run resume
    await store.pin(root, { partial: true, signal })

    // the thin manifest's pass stored every page: count the slots, no second pass of lookups
    if (thin?.complete === true) await countSlots(ctx, thin.settled)
    else await new PageWalk(ctx, { basis, settled: thin?.settled }).run()

    distinctPages = await figures.timeline.time('pin', async () => {
      await store.pin(root, { name: options.name, signal })
      // windows dedupe only within themselves: the store knows the image's exact distinct pages
      return (await store.inspect(root, { signal })).distinctPages
    })
    if (thin?.output != null) {
      // every page went to the file as it was found or arrived
      const { writer, slots } = thin.output
      await figures.timeline.time('output', async () => writer.commit(slots))
    } else if (options.out != null) {
      figures.progress('export')
      const out = options.out
      await figures.timeline.time('output', async () => store.exportImage(root, out, { signal }))
    }
  } finally {
    // a pull that failed after the manifest leaves no temporary behind (commit made it the file)
    await thin?.output?.writer.abort()
  }
  figures.progress('done')

  const durationMs = performance.now() - started
  const counted = figures.report()
  return {
    root: root.toString(),
    name: options.name,
    out: options.out,
    size: manifest.size,
    pages: manifest.pages,
    zeroPages: counted.zeroPages,
    distinctPages,
    tiers: counted.tiers,
    manifest: counted.manifest,
    delta: counted.delta,
    wanBytes: counted.wanBytes,
    droppedHolders: counted.droppedHolders,
    timeline: counted.timeline,
    durationMs,
    throughput: manifest.size / Math.max(durationMs / 1000, 1e-3),
    rounds: 1
  }
}
