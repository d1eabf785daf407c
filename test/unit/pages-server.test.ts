import test from 'ava'
import { lpStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { PageExchange } from '../../protocols/pages/page-exchange.ts'
import { PAGES_PROTOCOL } from '../../protocols/pages/index.ts'
import { decodeResponse, encodeRequest } from '../../protocols/pages/codec.ts'
import { MemoryPageStore, randomPages } from '../fixtures/memory-page-store.ts'
import { memoryComponents } from '../fixtures/page-nodes.ts'
import { waitFor } from '../fixtures/wait.ts'

async function setup (t: any, init: Record<string, unknown> = {}) {
  const store = new MemoryPageStore()
  const pages = randomPages(1024)
  await store.putMany(pages)
  const { server, client, clientPeer } = await memoryComponents()
  const s = new PageExchange(server, { store, ...init })
  const c = new PageExchange(client, { store: new MemoryPageStore(), ...init })
  await s.start()
  await c.start()
  t.teardown(async () => { await c.stop(); await s.stop() })
  const open = async (): Promise<Stream> => client.connectionManager.openStream(clientPeer, PAGES_PROTOCOL)
  return { s, c, pages, clientPeer, open }
}

function closed (stream: Stream): Promise<Event> {
  return new Promise(resolve => { stream.addEventListener('close', resolve, { once: true }) })
}

test('handler serves pipelined requests on one in-memory stream', async t => {
  const { c, pages, clientPeer } = await setup(t, { maxCidsPerRequest: 16, window: 4 })
  const res = await c.fetch(clientPeer, pages.map(p => p.cid))
  t.is(res.received.length, pages.length)
})

test('a request frame that does not decode makes the server abort the stream', async t => {
  const { s, open } = await setup(t)
  const stream = await open()
  const done = closed(stream)
  const lp = lpStream(stream)
  await lp.write(new Uint8Array([0xa1, 0x61, 0x78, 0x01])) // {"x": 1}
  const evt: any = await done
  t.is(stream.status, 'reset')
  t.truthy(evt)
  await waitFor(() => (s as any).streams.size === 0)
})

test('requests pipelined beyond the in-flight limit wait on the wire and are all answered', async t => {
  const { s, pages, open } = await setup(t, { maxInflightPerStream: 2, maxRequestFrameLength: 4096 })
  const stream = await open()
  const lp = lpStream(stream, { maxDataLength: 2 * 1024 * 1024 })
  // 64 requests at once, answers not read yet
  const cids = pages.slice(0, 16).map(p => p.cid)
  await lp.writeV(Array.from({ length: 64 }, (_, id) => encodeRequest({ id, cids })))
  // the server works on at most 2 at a time; it still answers all, in turn, as we read
  const seen = new Set<number>()
  while (seen.size < 64) {
    const res = decodeResponse(await lp.read({ signal: AbortSignal.timeout(10_000) }))
    t.is(res.entries.length, 16)
    seen.add(res.id)
  }
  t.is(s.counters.requestsServed, 64)
  await stream.close()
})

test('per-peer stream limit refuses extra streams with a reset', async t => {
  const { open } = await setup(t, { maxStreamsPerPeer: 2 })
  const a = await open()
  const b = await open()
  const c = await open()
  const done = closed(c)
  await done
  t.is(c.status, 'reset')
  t.is(a.status, 'open')
  t.is(b.status, 'open')
  a.abort(new Error('test done'))
  b.abort(new Error('test done'))
})

test('a client that opens a stream and says nothing is cut off after the idle timeout', async t => {
  const { s, open } = await setup(t, { idleTimeout: 200 })
  const stream = await open()
  await closed(stream)
  t.is(stream.status, 'reset')
  await waitFor(() => s.counters.timeouts === 1)
  t.pass()
})
