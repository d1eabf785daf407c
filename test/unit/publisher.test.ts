import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import { writeImage } from '../../testnet/synthetic.ts'
import { startFabric } from '../fixtures/fabric.ts'

test('imported and pulled pages are announced; every other node finds their holders', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-publisher-'))
  t.teardown(async () => rm(dir, { recursive: true, force: true }))
  const [a1, b1, c1] = await startFabric(t, { sites: { a: 1, b: 1, c: 1 } })
  const image = join(dir, 'vm.ram')
  await writeImage(image, { sizeBytes: 4 * 1024 * 1024, seed: 21 })
  const { root } = await a1.repo.store.importImage(image, { name: 'vm' })
  await a1.node.flushAnnouncements()

  const cids: CID[] = []
  for await (const slot of a1.repo.store.pageSlots(root)) if (slot.cid != null) cids.push(slot.cid)
  // announced with 16-byte keys (plus a little framing), not whole 32-byte digests
  const { sentBytes, sentKeys } = a1.node.libp2p.services.providers.stats
  t.true(sentKeys > 0 && sentBytes / sentKeys < 20, `${sentBytes} bytes for ${sentKeys} keys`)
  const byA = await c1.node.libp2p.services.providers.resolve(cids)
  t.true(byA.every(peers => peers.some(p => p.equals(a1.node.peerId))), 'the importer is found for every page')

  await b1.node.pull({ root, source: a1.node.peerId, name: 'vm' })
  await b1.node.flushAnnouncements()
  const byB = await c1.node.libp2p.services.providers.resolve(cids)
  t.true(byB.every(peers => peers.some(p => p.equals(b1.node.peerId))), 'the destination announces what it received')
})
