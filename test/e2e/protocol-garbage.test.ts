/**
 * A fabric member that sends garbage, wrongly shaped or oversize frames on the blocks, migrate,
 * site and pages protocols of a real daemon: each such stream is reset by the daemon (the
 * sender reads an error, not a hang), and the daemon keeps serving every protocol afterwards.
 */
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { encode as cborEncode } from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { createHost } from '../../node/libp2p.ts'
import { readFabricKeyFile } from '../../node/fabric-key.ts'
import { blockExchange, MAX_FRAME_SIZE as BLOCKS_MAX_FRAME } from '../../protocols/blocks/index.ts'
import { MAX_FRAME_SIZE as MIGRATE_MAX_FRAME } from '../../protocols/migrate/index.ts'
import { siteExchange, MAX_MESSAGE_SIZE as SITE_MAX_FRAME } from '../../protocols/site/index.ts'
import { pageExchange, PAGES_PROTOCOL, DEFAULT_MAX_REQUEST_FRAME_LENGTH } from '../../protocols/pages/index.ts'
import { pageCid } from '../../store/page.ts'
import { MemoryPageStore } from '../fixtures/memory-page-store.ts'
import { startDaemon } from '../fixtures/daemon.ts'
import { makeImage, ok, tempDir, writeTemp, PAGE } from './cli-helpers.ts'

const PROTOCOLS: Array<{ id: string, max: number }> = [
  { id: '/memfabric/blocks/1.0.0', max: BLOCKS_MAX_FRAME },
  { id: '/memfabric/migrate/1.0.0', max: MIGRATE_MAX_FRAME },
  { id: '/memfabric/site/1.0.0', max: SITE_MAX_FRAME },
  { id: PAGES_PROTOCOL, max: DEFAULT_MAX_REQUEST_FRAME_LENGTH }
]

test('garbage and oversize frames on blocks, migrate, site and pages: the stream is reset, the daemon keeps serving', async t => {
  const dir = await tempDir(t)
  const repo = join(dir, 'r')
  await ok(t, ['init', '--repo', repo, '--site', 'paris', '--listen', '/ip4/127.0.1.40/tcp/0'])
  const daemon = await startDaemon(t, repo)
  const image = makeImage(64, 0)
  const file = await writeTemp(dir, 'vm.ram', image.bytes)
  const { root } = await ok(t, ['import', file, '--name', 'vm', '--repo', repo, '--json'])
  const page = pageCid(image.bytes.subarray(PAGE, 2 * PAGE))

  const attacker = await createHost<any>({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    fabricKey: await readFabricKeyFile(join(repo, 'fabric.key')),
    services: {
      site: siteExchange({ site: 'elsewhere' }),
      blocks: blockExchange({ blocks: { getBlock: async () => undefined } }),
      pages: pageExchange({ store: new MemoryPageStore() })
    }
  })
  t.teardown(async () => { await attacker.stop() })
  const connection = await attacker.dial(multiaddr(daemon.info.addresses[0]), { signal: AbortSignal.timeout(30_000) })
  const peer = connection.remotePeer

  const attacks: Array<{ name: string, frame: (max: number) => Uint8Array }> = [
    { name: 'random bytes', frame: () => randomBytes(200) },
    { name: 'undecodable CBOR', frame: () => new Uint8Array([0xff, 0xff, 0xff]) },
    { name: 'CBOR of the wrong shape', frame: () => cborEncode({ cids: 'x', root: 1, site: 7, id: -1 }) },
    { name: 'empty frame', frame: () => new Uint8Array(0) },
    { name: 'oversize frame', frame: (max) => new Uint8Array(max + 1) }
  ]
  for (const protocol of PROTOCOLS) {
    for (const attack of attacks) {
      const stream = await attacker.dialProtocol(peer, protocol.id, { signal: AbortSignal.timeout(30_000) })
      const lp = lpStream(stream, { maxDataLength: 8 * 1024 * 1024 })
      await lp.write(attack.frame(protocol.max), { signal: AbortSignal.timeout(30_000) }).catch(() => {})
      // the daemon answers with a reset or the end of the stream, never data, never a hang
      const err = await t.throwsAsync(lp.read({ signal: AbortSignal.timeout(60_000) }), undefined, `${protocol.id}: ${attack.name}`)
      t.false(err?.name === 'TimeoutError' || err?.name === 'AbortError', `${protocol.id}: ${attack.name}: ${err?.name} ${err?.message}`)
      stream.abort(new Error('done'))
    }
  }
  // a frame announcing a huge length, then nothing: refused from the length prefix alone
  for (const protocol of PROTOCOLS) {
    const stream = await attacker.dialProtocol(peer, protocol.id, { signal: AbortSignal.timeout(30_000) })
    stream.send(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f])) // varint 4 GiB - 1
    const lp = lpStream(stream)
    const err = await t.throwsAsync(lp.read({ signal: AbortSignal.timeout(60_000) }), undefined, `${protocol.id}: 4 GiB length prefix`)
    t.false(err?.name === 'TimeoutError' || err?.name === 'AbortError', `${protocol.id}: huge length: ${err?.name} ${err?.message}`)
    stream.abort(new Error('done'))
  }

  // still serving, on the same connection
  t.is(daemon.child.exitCode, null)
  t.is((await attacker.services.site.exchange(peer)).site, 'paris')
  const blocks = await attacker.services.blocks.fetch(peer, [CID.parse(root)])
  t.is(blocks.received.length, 1)
  const pages = await attacker.services.pages.fetch(peer, [page])
  t.is(pages.received.length, 1)
})
