import test from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { writeImage } from '../../testnet/synthetic.ts'
import { startFabric } from '../fixtures/fabric.ts'
import { waitFor } from '../fixtures/wait.ts'
import { MiB, tempDir } from './migration-helpers.ts'

const LIAR = fileURLToPath(new URL('../fixtures/liar-peer.ts', import.meta.url))

test('a lying holder in the destination\'s site is detected and routed around', async t => {
  const dir = await tempDir(t, 'faults')
  const [a1, b1, b2] = await startFabric(t, { sites: { a: 1, b: 2 } })
  const vm = join(dir, 'vm.ram')
  const sibling = join(dir, 'sibling.ram')
  const family = { seed: 11, pages: 1024, fraction: 1 }
  await writeImage(vm, { sizeBytes: 8 * MiB, seed: 1, template: { ...family, offsetPages: 10 } })
  await writeImage(sibling, { sizeBytes: 8 * MiB, seed: 2, template: { ...family, offsetPages: 600 } })
  const { root } = await a1.repo.store.importImage(vm, { name: 'vm' })
  await b1.repo.store.importImage(sibling, { name: 'sibling' })

  // the liar claims (presence) and announces (DHT) every page of the image
  const cids: string[] = []
  for await (const slot of a1.repo.store.pageSlots(root)) if (slot.cid != null) cids.push(slot.cid.toString())
  await writeFile(join(dir, 'cids'), cids.join('\n'))
  const liar = spawn(process.execPath, [LIAR, join(a1.dir, 'fabric.key'), '/ip4/127.0.2.9/tcp/0', 'b',
    b2.node.libp2p.getMultiaddrs()[0].toString(), join(dir, 'cids')], {
    stdio: ['ignore', 'pipe', 'inherit'],
    // its scratch database goes in this test's directory, removed even if the liar is killed
    env: { ...process.env, TMPDIR: dir }
  })
  t.teardown(() => { liar.kill('SIGKILL') })
  let out = ''
  liar.stdout.setEncoding('utf8').on('data', s => { out += s })
  await waitFor(() => out.includes('"announced"'), { timeout: 180_000, message: `liar did not start: ${out}` })
  const liarId = JSON.parse(out.split('\n')[0]).peerId as string
  await waitFor(() => b2.node.peers().some(p => p.peerId.toString() === liarId && p.site === 'b'), { timeout: 120_000 })
  await a1.node.flushAnnouncements()
  await b1.node.flushAnnouncements()

  const outFile = join(dir, 'pulled.ram')
  const report = await b2.node.pull({ root, source: a1.node.peerId, name: 'vm', out: outFile })
  t.deepEqual(await readFile(outFile), await readFile(vm))
  const dropped = report.droppedHolders.find(d => d.peerId === liarId)
  t.truthy(dropped, 'the liar was dropped')
  t.regex(dropped!.reason, /verif|match|misbehav/i)
  t.true(report.tiers.site.pages > 0, `honest site peers still served pages (tiers ${JSON.stringify(report.tiers)}, dropped ${JSON.stringify(report.droppedHolders)})`)
  liar.kill('SIGTERM')
  await once(liar, 'exit')
})

test('an interrupted pull resumes fetching only what is missing', async t => {
  const dir = await tempDir(t, 'faults')
  const [a1, b1] = await startFabric(t, { sites: { a: 1, b: 1 } })
  const vm = join(dir, 'vm.ram')
  await writeImage(vm, { sizeBytes: 16 * MiB, seed: 5, zeroFraction: 0.1, duplicateFraction: 0 })
  const { root, pages, zeroPages } = await a1.repo.store.importImage(vm, { name: 'vm' })
  await a1.node.flushAnnouncements()

  // abort the first attempt once some pages have arrived
  const controller = new AbortController()
  const first = b1.node.pull({
    root,
    source: a1.node.peerId,
    signal: controller.signal,
    windowPages: 256,
    onProgress: p => { if (p.tiers.source.pages >= 400) controller.abort() }
  })
  await t.throwsAsync(first)
  const stats = await b1.repo.store.stats()
  t.true(stats.distinctPages > 0, 'pages from the first attempt were kept')
  t.true(stats.distinctPages < pages - zeroPages, 'the first attempt did not finish')

  const report = await b1.node.pull({ root, source: a1.node.peerId, name: 'vm', out: join(dir, 'pulled.ram') })
  t.deepEqual(await readFile(join(dir, 'pulled.ram')), await readFile(vm))
  t.is(report.tiers.source.pages, report.distinctPages - stats.distinctPages, 'the re-run fetched only what was missing')
  t.true(report.tiers.local.pages >= stats.distinctPages)
})
