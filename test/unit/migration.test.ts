import test from 'ava'
import { readFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeImage } from '../../testnet/synthetic.ts'
import { startFabric } from '../fixtures/fabric.ts'

const MiB = 1024 * 1024

async function tempDir (t: any): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-migration-'))
  t.teardown(async () => rm(dir, { recursive: true, force: true }))
  return dir
}

test('a destination whose site holds a sibling image fetches most pages in its site', async t => {
  const dir = await tempDir(t)
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
