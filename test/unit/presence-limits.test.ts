/**
 * The presence server's bounds, on real hosts over TCP: streams per peer, request frame size,
 * idle time. A client beyond a bound gets its stream reset; the server stays usable.
 */
import test from 'ava'
import { lpStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { PRESENCE_PROTOCOL } from '../../protocols/presence/index.ts'
import { decodeResponse, encodeRequest } from '../../protocols/presence/codec.ts'
import { randomPages } from '../fixtures/memory-page-store.ts'
import { connect, pageNode } from '../fixtures/page-nodes.ts'
import { waitFor } from '../fixtures/wait.ts'

function closed (stream: Stream): Promise<void> {
  if (stream.status === 'closed' || stream.status === 'reset' || stream.status === 'aborted') return Promise.resolve()
  return new Promise(resolve => { stream.addEventListener('close', () => { resolve() }, { once: true }) })
}

async function ask (stream: Stream, id: number, cids: any[]): Promise<boolean> {
  const lp = lpStream(stream)
  await lp.write(encodeRequest({ id, cids }))
  const res = decodeResponse(await lp.read({ signal: AbortSignal.timeout(10_000) }))
  return res.id === id && res.count === cids.length
}

test('a peer beyond maxStreamsPerPeer has its extra stream reset; open ones keep working, and slots come back', async t => {
  const pages = randomPages(8)
  const server = await pageNode(t, { presence: { maxStreamsPerPeer: 2 } })
  await server.store.putMany(pages)
  const client = await pageNode(t)
  await connect(client.node, server.addr)
  const cids = pages.map(p => p.cid)

  const a = await client.node.dialProtocol(server.addr, PRESENCE_PROTOCOL)
  const b = await client.node.dialProtocol(server.addr, PRESENCE_PROTOCOL)
  // the server counts a stream once its handler runs: make sure both are being served
  t.true(await ask(a, 1, cids))
  t.true(await ask(b, 2, cids))
  const c = await client.node.dialProtocol(server.addr, PRESENCE_PROTOCOL)
  await closed(c)
  t.is(c.status, 'reset')
  t.is(server.node.services.presence.counters.refused, 1)
  // the two admitted streams are untouched by the refusal
  t.true(await ask(a, 3, cids))
  t.true(await ask(b, 4, cids))

  await a.close()
  await b.close()
  await waitFor(() => (server.node.services.presence as any).streams.peers === 0, { message: 'slots not released' })
  t.deepEqual(await client.node.services.presence.query(server.addr, cids), cids.map(() => true))
})

test('a request frame over the size cap resets that stream only', async t => {
  const server = await pageNode(t, { presence: { maxRequestFrameLength: 1024 } })
  const client = await pageNode(t)
  await connect(client.node, server.addr)
  const stream = await client.node.dialProtocol(server.addr, PRESENCE_PROTOCOL)
  const done = closed(stream)
  // 64 CIDs (~2.4 KB of dag-cbor) where the server reads at most 1 KiB
  await lpStream(stream).write(encodeRequest({ id: 1, cids: randomPages(64).map(p => p.cid) }))
  await done
  t.is(stream.status, 'reset')
  const pages = randomPages(4)
  t.deepEqual(await client.node.services.presence.query(server.addr, pages.map(p => p.cid)), [false, false, false, false])
})

test('a client that opens a stream and sends nothing is cut off after the idle timeout', async t => {
  const server = await pageNode(t, { presence: { idleTimeout: 300 } })
  const client = await pageNode(t)
  await connect(client.node, server.addr)
  const stream = await client.node.dialProtocol(server.addr, PRESENCE_PROTOCOL)
  const started = Date.now()
  await closed(stream)
  t.is(stream.status, 'reset')
  t.true(Date.now() - started < 10_000)
  await waitFor(() => server.node.services.presence.counters.timeouts === 1)
  t.is((server.node.services.presence as any).streams.size, 0)
})
