/**
 * `memfabric daemon --allow-peer ID`: only listed fabric members may fetch pages and manifest
 * blocks; the streams of others are reset, so their pulls fail, while listed peers pull normally.
 */
import test from 'ava'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { createHost } from '../../node/libp2p.ts'
import { readFabricKeyFile } from '../../node/fabric-key.ts'
import { pageExchange } from '../../protocols/pages/index.ts'
import { pageCid } from '../../store/page.ts'
import { MemoryPageStore } from '../fixtures/memory-page-store.ts'
import { cli, makeImage, ok, tempDir, writeTemp, PAGE } from './cli-helpers.ts'
import { startDaemon } from '../fixtures/daemon.ts'

test('only allow-listed peers may fetch pages and blocks', async t => {
  const dir = await tempDir(t)
  const a = join(dir, 'a')
  const friend = join(dir, 'friend')
  const other = join(dir, 'other')
  await ok(t, ['init', '--repo', a, '--site', 'paris', '--listen', '/ip4/127.0.1.50/tcp/0'])
  await ok(t, ['init', '--repo', friend, '--site', 'berlin', '--listen', '/ip4/127.0.2.50/tcp/0', '--fabric-key', join(a, 'fabric.key')])
  await ok(t, ['init', '--repo', other, '--site', 'berlin', '--listen', '/ip4/127.0.2.51/tcp/0', '--fabric-key', join(a, 'fabric.key')])
  const friendId = (await ok(t, ['id', '--repo', friend, '--json'])).peerId

  const bad = await cli(['daemon', '--repo', a, '--api-port', '0', '--allow-peer', 'not-a-peer'])
  t.is(bad.code, 1)
  t.regex(bad.stderr, /--allow-peer 'not-a-peer' is not a peer id/)

  const da = await startDaemon(t, a, ['--allow-peer', friendId])
  const df = await startDaemon(t, friend, ['--bootstrap', da.info.addresses[0]])
  const dother = await startDaemon(t, other, ['--bootstrap', da.info.addresses[0]])
  t.is(df.info.peerId, friendId)
  const image = makeImage(32, 0)
  const file = await writeTemp(dir, 'vm.ram', image.bytes)
  const { root } = await ok(t, ['import', file, '--name', 'vm', '--repo', a, '--json'])

  // not on the list: the manifest cannot be fetched, the pull fails with one line
  const refused = await cli(['pull', root, '--from', da.info.addresses[0], '--repo', other])
  t.is(refused.code, 1)
  t.is(refused.stderr.trim().split('\n').length, 1)
  t.regex(refused.stderr, /held by no reachable peer|could not be read/)
  t.is(dother.child.exitCode, null)

  // a page stream of a stranger to the list is reset
  const host = await createHost<any>({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    fabricKey: await readFabricKeyFile(join(a, 'fabric.key')),
    services: { pages: pageExchange({ store: new MemoryPageStore() }) }
  })
  t.teardown(async () => { await host.stop() })
  const connection = await host.dial(multiaddr(da.info.addresses[0]), { signal: AbortSignal.timeout(30_000) })
  await t.throwsAsync(host.services.pages.fetch(connection.remotePeer, [pageCid(image.bytes.subarray(PAGE, 2 * PAGE))], { signal: AbortSignal.timeout(60_000) }))

  // on the list: the same pull works
  const out = join(dir, 'pulled.ram')
  await ok(t, ['pull', root, '--from', da.info.addresses[0], '--out', out, '--repo', friend, '--json'])
  t.true((await readFile(out)).equals(image.bytes))
})
