import test from 'ava'
import { lpStream } from '@libp2p/utils'
import { encode as cborEncode } from '@ipld/dag-cbor'
import { PRESENCE_PROTOCOL, PeerMisbehavedError, TransferTimeoutError } from '../../protocols/presence/index.ts'
import { Presence } from '../../protocols/presence/presence.ts'
import { decodeRequest, encodeResponse } from '../../protocols/presence/codec.ts'
import { MemoryPageStore, randomPages } from '../fixtures/memory-page-store.ts'
import { connect, memoryComponents, pageNode, rawNode, repoNode } from '../fixtures/page-nodes.ts'

test('bitmap is correct for 20,000 CIDs with a known subset held', async t => {
  const pages = randomPages(20_000)
  const server = await repoNode(t)
  const held = (i: number): boolean => (i * 7919) % 5 < 2
  await server.store.putMany(pages.filter((_, i) => held(i)))
  const client = await pageNode(t)
  await connect(client.node, server.addr)
  const answer = await client.node.services.presence.query(server.addr, pages.map(p => p.cid))
  t.is(answer.length, pages.length)
  t.deepEqual(answer, pages.map((_, i) => held(i)))
  // 20,000 CIDs need two requests of at most 16,384
  t.is(client.node.services.presence.counters.queriesSent, 2)
  t.is(server.node.services.presence.counters.cidsServed, 20_000)
  t.deepEqual(await client.node.services.presence.query(server.addr, []), [])
})

test('small queries over an in-memory stream pair, window 1 and many', async t => {
  const store = new MemoryPageStore()
  const pages = randomPages(300)
  await store.putMany(pages.slice(0, 100))
  const { server, client, clientPeer } = await memoryComponents()
  const s = new Presence(server, { store, maxCidsPerQuery: 16 })
  const c = new Presence(client, { store: new MemoryPageStore(), maxCidsPerQuery: 16 })
  await s.start()
  await c.start()
  t.teardown(async () => { await c.stop(); await s.stop() })
  for (const window of [1, 3, 50]) {
    const answer = await c.query(clientPeer, pages.map(p => p.cid), { window })
    t.deepEqual(answer, pages.map((_, i) => i < 100))
  }
})

test('a server answering the wrong query or garbage is detected; a silent one times out', async t => {
  const pages = randomPages(40)
  const client = await pageNode(t)
  const behaviours: Array<[string, (lp: any, req: any, stream: any) => Promise<void>, any]> = [
    ['wrong id', async (lp, req) => { await lp.write(encodeResponse(req.id + 1, req.cids.map(() => true))) }, PeerMisbehavedError],
    ['wrong count', async (lp, req) => { await lp.write(encodeResponse(req.id, [true])) }, PeerMisbehavedError],
    ['garbage', async (lp) => { await lp.write(cborEncode({ hello: 'world' })) }, PeerMisbehavedError],
    ['closes', async () => {}, PeerMisbehavedError],
    ['silent', async (_lp, _req, stream) => { await new Promise(resolve => { stream.addEventListener('close', resolve) }) }, TransferTimeoutError]
  ]
  for (const [name, behave, errorClass] of behaviours) {
    const server = await rawNode(t)
    await server.node.handle(PRESENCE_PROTOCOL, async (stream) => {
      const lp = lpStream(stream)
      try {
        await behave(lp, decodeRequest(await lp.read()), stream)
        await stream.close()
      } catch (err: any) {
        stream.abort(err)
      }
    })
    await connect(client.node, server.addr)
    await t.throwsAsync(client.node.services.presence.query(server.addr, pages.map(p => p.cid), { idleTimeout: name === 'silent' ? 300 : 90_000 }), { instanceOf: errorClass }, name)
  }
})
