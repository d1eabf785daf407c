import test from 'ava'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { evolveImage, writeImage } from '../../testnet/synthetic.ts'
import { startFabric } from '../fixtures/fabric.ts'
import { MiB, tempDir } from './migration-helpers.ts'


test('a VM returning to a site that holds its older snapshot: pages travel as deltas, the manifest is rebuilt', async t => {
  const dir = await tempDir(t, 'delta')
  const [a1, b1, b2] = await startFabric(t, { sites: { a: 1, b: 2 } })
  const older = join(dir, 't1.ram')
  const newer = join(dir, 't2.ram')
  await writeImage(older, { sizeBytes: 16 * MiB, seed: 11 })
  await evolveImage(older, newer, { changeFraction: 0.1, seed: 12 })

  // the VM ran at B (t1), came to A, changed (t2) and now returns
  await a1.repo.store.importImage(older, { name: 'vm@t1' })
  const { root } = await a1.repo.store.importImage(newer, { name: 'vm@t2' })
  await b1.repo.store.importImage(older, { name: 'vm@t1' })
  await b1.node.flushAnnouncements()
  await a1.node.flushAnnouncements()

  const out = join(dir, 'pulled.ram')
  const report = await b2.node.pull({ root, source: a1.node.peerId, name: 'vm@t2', out })

  t.deepEqual(await readFile(out), await readFile(newer))
  t.true((await b2.repo.store.inspect('vm@t2')).complete)
  t.true(report.tiers.source.pages > 0)
  t.true((report.delta?.pages ?? 0) > report.tiers.source.pages / 4, `delta ${report.delta?.pages} of ${report.tiers.source.pages} source pages; manifest ${JSON.stringify(report.manifest)}; dropped ${JSON.stringify(report.droppedHolders)}`)
  t.true(report.tiers.source.wireBytes < report.tiers.source.bytes / 2)
  // every chunk was rebuilt from t1's manifest (read from b1): only the root crossed sites
  t.is(report.manifest.fetched, 1, `manifest blocks fetched: ${report.manifest.fetched} of ${report.manifest.blocks}`)
})

test('without an older image at the source, a pull sends no deltas and still completes', async t => {
  const dir = await tempDir(t, 'delta')
  const [a1, b1] = await startFabric(t, { sites: { a: 1, b: 1 } })
  const image = join(dir, 'vm.ram')
  await writeImage(image, { sizeBytes: 8 * MiB, seed: 21 })
  const { root } = await a1.repo.store.importImage(image, { name: 'vm' })
  const out = join(dir, 'pulled.ram')
  const report = await b1.node.pull({ root, source: a1.node.peerId, name: 'vm', out })
  t.deepEqual(await readFile(out), await readFile(image))
  t.is(report.delta?.pages, 0)
  // no site but the two: the chunks are cut from the thin manifest, only the root travels whole
  t.is(report.manifest.fetched, 1)
  t.is(report.manifest.rebuilt, report.manifest.blocks - 1)
  // the thin pass stored every page: the slots are counted without a second pass, and add up
  const info = await a1.repo.store.inspect(root)
  t.is(report.zeroPages, info.zeroPages)
  t.is(report.distinctPages, info.distinctPages)
  const { local, site, remote, source } = report.tiers
  t.is(local.pages + site.pages + remote.pages + source.pages + report.zeroPages, report.pages)
  t.is(source.pages, info.distinctPages)
})
