import test from 'ava'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeImage } from '../../testnet/synthetic.ts'
import { startFabric } from '../fixtures/fabric.ts'
import { MiB, tempDir } from './migration-helpers.ts'


test('a destination whose site holds a sibling image fetches most pages in its site', async t => {
  const dir = await tempDir(t, 'migration')
  const [a1, b1, b2] = await startFabric(t, { sites: { a: 1, b: 2 } })
  const family = { seed: 7, pages: 2048, fraction: 1 }
  const vm = join(dir, 'vm.ram')
  const sibling = join(dir, 'sibling.ram')
  await writeImage(vm, { sizeBytes: 16 * MiB, seed: 1, template: { ...family, offsetPages: 100 } })
  await writeImage(sibling, { sizeBytes: 16 * MiB, seed: 2, template: { ...family, offsetPages: 900 } })

  const { root } = await a1.repo.store.importImage(vm, { name: 'vm' })
  await b1.repo.store.importImage(sibling, { name: 'sibling' })
  await b1.node.flushAnnouncements()
  await a1.node.flushAnnouncements()

  const out = join(dir, 'pulled.ram')
  const report = await b2.node.pull({ root, source: a1.node.peerId, name: 'vm', out })

  t.deepEqual(await readFile(out), await readFile(vm))
  t.true(report.tiers.site.pages > 0, 'pages came from the same site')
  t.true(report.tiers.site.pages > report.tiers.source.pages, `site ${report.tiers.site.pages} vs source ${report.tiers.source.pages}`)
  t.true(report.wanBytes > 0)
  const info = await b2.repo.store.inspect('vm')
  t.true(info.complete)
})

test('with a third site that holds a sibling, its pages come from there (remote tier) rather than from the source', async t => {
  const dir = await tempDir(t, 'migration')
  const [a1, b1, c1] = await startFabric(t, { sites: { a: 1, b: 1, c: 1 } })
  const family = { seed: 9, pages: 1024, fraction: 1 }
  const vm = join(dir, 'vm.ram')
  const sibling = join(dir, 'sibling.ram')
  await writeImage(vm, { sizeBytes: 8 * MiB, seed: 3, template: { ...family, offsetPages: 50 } })
  await writeImage(sibling, { sizeBytes: 8 * MiB, seed: 4, template: { ...family, offsetPages: 700 } })
  const { root } = await a1.repo.store.importImage(vm, { name: 'vm' })
  await c1.repo.store.importImage(sibling, { name: 'sibling' })
  await a1.node.flushAnnouncements()
  await c1.node.flushAnnouncements()

  const out = join(dir, 'pulled.ram')
  const report = await b1.node.pull({ root, source: a1.node.peerId, name: 'vm', out })
  t.deepEqual(await readFile(out), await readFile(vm))
  t.true(report.tiers.remote.pages > 0, `remote ${report.tiers.remote.pages}, source ${report.tiers.source.pages}`)
  // another site may hold what this one lacks: no thin manifest, the chunks are fetched by CID
  t.is(report.manifest.rebuilt, 0)
})
