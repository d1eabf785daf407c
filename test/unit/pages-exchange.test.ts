import test from 'ava'
import { lpStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { PAGE_SIZE } from '../../store/constants.ts'
import { pageCid, verifyPage } from '../../store/page.ts'
import { PAGES_PROTOCOL, PeerMisbehavedError, TransferTimeoutError, InvalidPageCidError } from '../../protocols/pages/index.ts'
import { decodeRequest, encodeResponse, PAGE_RAW } from '../../protocols/pages/codec.ts'
import { MemoryPageStore, compressiblePages, randomPages } from '../fixtures/memory-page-store.ts'
import { LyingPageStore, connect, pageNode, rawNode, repoNode, tempRepo } from '../fixtures/page-nodes.ts'
import { waitFor } from '../fixtures/wait.ts'

function collect () {
  const got = new Map<string, Uint8Array>()
  return { got, onPage: (cid: CID, bytes: Uint8Array) => { got.set(cid.toString(), Uint8Array.prototype.slice.call(bytes)) } }
}

test('fetches 5,000 pages, some missing, every page verified', async t => {
  const pages = randomPages(5000)
  const server = await repoNode(t)
  const held = pages.filter((_, i) => i % 17 !== 0)
  await server.store.putMany(held)
  const client = await repoNode(t)
  await connect(client.node, server.addr)
  const { got, onPage } = collect()

  const res = await client.node.services.pages.fetch(server.addr, pages.map(p => p.cid), { onPage, sink: client.store })

  t.is(res.received.length, held.length)
  t.is(res.missing.length, pages.length - held.length)
  t.deepEqual(res.missing.map(String).sort(), pages.filter((_, i) => i % 17 === 0).map(p => p.cid.toString()).sort())
  t.is(res.bytes, held.length * PAGE_SIZE)
  t.true(res.wireBytes >= res.bytes)
  t.is(got.size, held.length)
  for (const p of held) {
    t.true(verifyPage(p.cid, got.get(p.cid.toString())!))
  }
  // the sink got every verified page
  t.true((await client.store.has(held.map(p => p.cid))).every(Boolean))
  t.is(server.node.services.pages.counters.pagesServed, held.length)
  t.is(client.node.services.pages.counters.pagesFetched, held.length)
  t.is(client.node.services.pages.peerCounters.get(server.node.peerId.toString())?.bytesFetched, held.length * PAGE_SIZE)
})

test('several streams per fetch and many concurrent fetches from several clients', async t => {
  const pages = randomPages(3000)
  const server = await repoNode(t)
  await server.store.putMany(pages)
  const clients = await Promise.all([pageNode(t), pageNode(t), pageNode(t)])
  for (const c of clients) {
    await connect(c.node, server.addr)
  }
  const runs = []
  for (const [i, c] of clients.entries()) {
    for (let j = 0; j < 4; j++) {
      const slice = pages.slice((i * 4 + j) * 200, (i * 4 + j) * 200 + 1000)
      runs.push(c.node.services.pages.fetch(server.node.peerId, slice.map(p => p.cid), { streams: 1 + (j % 3), window: 1 + j }).then(r => ({ r, slice })))
    }
  }
  let total = 0
  for (const { r, slice } of await Promise.all(runs)) {
    t.is(r.received.length, slice.length)
    t.is(r.missing.length, 0)
    total += slice.length
  }
  t.is(server.node.services.pages.counters.pagesServed, total)
})

test('zero pages are never requested; non-page CIDs are refused', async t => {
  const server = await pageNode(t)
  const client = await pageNode(t)
  const zero = pageCid(new Uint8Array(PAGE_SIZE))
  const { got, onPage } = collect()
  const res = await client.node.services.pages.fetch(server.addr, [zero], { onPage })
  t.deepEqual(res.received.map(String), [zero.toString()])
  t.is(res.wireBytes, 0)
  t.is(server.node.services.pages.counters.requestsServed, 0)
  t.is(got.get(zero.toString())?.byteLength, PAGE_SIZE)
  const { CID } = await import('multiformats/cid')
  const notPage = CID.parse('bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')
  await t.throwsAsync(client.node.services.pages.fetch(server.addr, [notPage]), { instanceOf: InvalidPageCidError })
})

test('zstd round-trips and reduces wire bytes for compressible pages', async t => {
  const pages = compressiblePages(2000)
  const server = await repoNode(t)
  await server.store.putMany(pages)
  const client = await repoNode(t)
  await connect(client.node, server.addr)
  const { got, onPage } = collect()
  const plain = await client.node.services.pages.fetch(server.addr, pages.map(p => p.cid))
  const packed = await client.node.services.pages.fetch(server.addr, pages.map(p => p.cid), { compress: 'zstd', onPage, sink: client.store })
  t.is(packed.received.length, pages.length)
  t.is(packed.bytes, plain.bytes)
  t.true(packed.wireBytes < plain.wireBytes / 4, `zstd ${packed.wireBytes} vs raw ${plain.wireBytes}`)
  for (const p of pages) {
    t.true(Buffer.from(p.bytes).equals(got.get(p.cid.toString())!))
  }
  // incompressible pages go raw even when compression is asked for
  const random = randomPages(100)
  await server.store.putMany(random)
  const r = await client.node.services.pages.fetch(server.addr, random.map(p => p.cid), { compress: 'zstd' })
  t.is(r.received.length, 100)
  t.true(r.wireBytes >= r.bytes)
})

test('a lying store is detected every time; pages verified before the lie were delivered', async t => {
  const pages = randomPages(2000)
  const repo = await tempRepo(t)
  await repo.store.putMany(pages)
  const store = new LyingPageStore(repo.store)
  const server = await pageNode(t, { store })
  const client = await pageNode(t)
  await connect(client.node, server.addr)
  for (let round = 0; round < 20; round++) {
    store.lies.clear()
    const bad = 37 + round * 97
    store.lie(pages[bad].cid, round % 2 === 0 ? pages[bad + 1].bytes : new Uint8Array(PAGE_SIZE).fill(round))
    const { got, onPage } = collect()
    const window = round % 3 === 0 ? 1 : 8
    const err = await t.throwsAsync(client.node.services.pages.fetch(server.addr, pages.map(p => p.cid), { onPage, window, compress: round % 4 === 1 ? 'zstd' : undefined }), { instanceOf: PeerMisbehavedError })
    t.is(err?.code, 'ERR_PEER_MISBEHAVED')
    t.is(err?.peer, server.node.peerId.toString())
    t.regex(err?.reason ?? '', /fails verification/)
    t.false(got.has(pages[bad].cid.toString()))
    for (const [cid, bytes] of got) {
      t.true(verifyPage(pages.find(p => p.cid.toString() === cid)!.cid, bytes))
    }
    if (window === 1) {
      // one request at a time, pages in order: exactly the ones before the lie
      t.is(got.size, bad)
    }
  }
  t.is(client.node.services.pages.counters.misbehaved, 20)
  // the server survives the aborted streams and still serves honestly
  store.lies.clear()
  const ok = await client.node.services.pages.fetch(server.addr, pages.slice(0, 300).map(p => p.cid))
  t.is(ok.received.length, 300)
})

/** A raw server that answers the first request by `misbehave(lp, request)`. */
async function rawServer (t: any, misbehave: (lp: ReturnType<typeof lpStream<Stream>>, req: ReturnType<typeof decodeRequest>, stream: Stream) => Promise<void>) {
  const server = await rawNode(t)
  await server.node.handle(PAGES_PROTOCOL, async (stream) => {
    const lp = lpStream(stream)
    try {
      const req = decodeRequest(await lp.read())
      await misbehave(lp, req, stream)
    } catch {
      stream.abort(new Error('raw server done'))
    }
  })
  return server
}

const pagesFor = (req: { cids: CID[] }, all: Map<string, Uint8Array>) => req.cids.map(c => ({ kind: PAGE_RAW, bytes: all.get(c.toString())! }) as const)

test('garbage, oversize, truncated, unknown-id and out-of-order answers are all detected', async t => {
  const pages = randomPages(600)
  const all = new Map(pages.map(p => [p.cid.toString(), p.bytes]))
  const cids = pages.map(p => p.cid)
  const client = await pageNode(t)
  const cases: Array<[string, RegExp, Parameters<typeof rawServer>[1]]> = [
    ['garbage', /undecodable/, async (lp) => { await lp.write(new Uint8Array([9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9])) }],
    ['oversize', /oversize/, async (lp) => { await lp.write(new Uint8Array(2 * 1024 * 1024)) }],
    ['truncated', /unanswered/, async (lp, req, stream) => {
      const frame = encodeResponse({ id: req.id, start: 0, last: true, entries: pagesFor(req, all) })
      stream.send(Buffer.from([0xff, 0xff, 0x3f])) // a varint announcing a long frame…
      stream.send(frame.subarray(0, 5000)) // …that never completes
      await stream.close()
    }],
    ['unknown id', /unknown request id/, async (lp, req) => {
      await lp.write(encodeResponse({ id: req.id + 1000, start: 0, last: true, entries: pagesFor(req, all) }))
    }],
    ['out of order', /out of order/, async (lp, req) => {
      await lp.write(encodeResponse({ id: req.id, start: 5, last: true, entries: pagesFor(req, all).slice(5) }))
    }],
    ['ends early', /ended early/, async (lp, req) => {
      await lp.write(encodeResponse({ id: req.id, start: 0, last: true, entries: pagesFor(req, all).slice(0, 10) }))
    }],
    ['closes mid-transfer', /unanswered/, async (lp, req, stream) => {
      await lp.write(encodeResponse({ id: req.id, start: 0, last: false, entries: pagesFor(req, all).slice(0, 10) }))
      await stream.close()
    }]
  ]
  for (const [name, reason, misbehave] of cases) {
    const server = await rawServer(t, misbehave)
    await connect(client.node, server.addr)
    const { got, onPage } = collect()
    const err = await t.throwsAsync(client.node.services.pages.fetch(server.addr, cids, { onPage }), { instanceOf: PeerMisbehavedError }, name)
    t.is(err?.code, 'ERR_PEER_MISBEHAVED', name)
    t.regex(err?.reason ?? '', reason, name)
    if (name === 'closes mid-transfer') {
      t.is(got.size, 10, 'honest pages before the fault were delivered')
    }
  }
})

test('a stalled server triggers the idle timeout', async t => {
  const pages = randomPages(10)
  const server = await rawServer(t, async (_lp, _req, stream) => {
    // hold the stream open and say nothing until the client gives up
    await new Promise<void>(resolve => { stream.addEventListener('close', () => { resolve() }) })
  })
  const client = await pageNode(t)
  const err = await t.throwsAsync(client.node.services.pages.fetch(server.addr, pages.map(p => p.cid), { idleTimeout: 300 }), { instanceOf: TransferTimeoutError })
  t.is(err?.code, 'ERR_TRANSFER_TIMEOUT')
  t.is(client.node.services.pages.counters.timeouts, 1)
})

test('a caller abort stops the fetch with the abort reason', async t => {
  const pages = randomPages(10)
  const server = await rawServer(t, async (_lp, _req, stream) => {
    await new Promise<void>(resolve => { stream.addEventListener('close', () => { resolve() }) })
  })
  const client = await pageNode(t)
  const controller = new AbortController()
  const p = client.node.services.pages.fetch(server.addr, pages.map(p => p.cid), { signal: controller.signal })
  await waitFor(() => client.node.getConnections(server.node.peerId).length > 0)
  controller.abort(new Error('caller gave up'))
  await t.throwsAsync(p, { message: 'caller gave up' })
})

test('stop() unregisters the handler and aborts open streams', async t => {
  const pages = randomPages(50)
  const server = await pageNode(t)
  await server.store.putMany(pages)
  const client = await pageNode(t)
  t.is((await client.node.services.pages.fetch(server.addr, pages.map(p => p.cid))).received.length, 50)
  await server.node.services.pages.stop()
  await t.throwsAsync(client.node.services.pages.fetch(server.addr, pages.map(p => p.cid)))
  await server.node.services.pages.start()
  t.is((await client.node.services.pages.fetch(server.addr, pages.map(p => p.cid))).received.length, 50)
})

test('stopping the client mid-fetch fails the fetch with ERR_NOT_STARTED, not as misbehaviour', async t => {
  const pages = randomPages(10)
  const server = await rawServer(t, async (_lp, _req, stream) => {
    await new Promise<void>(resolve => { stream.addEventListener('close', () => { resolve() }) })
  })
  const client = await pageNode(t)
  const p = client.node.services.pages.fetch(server.addr, pages.map(p => p.cid))
  await waitFor(() => client.node.getConnections(server.node.peerId).some(c => c.streams.length > 0))
  await client.node.services.pages.stop()
  await t.throwsAsync(p, { code: 'ERR_NOT_STARTED' })
  t.is(client.node.services.pages.counters.misbehaved, 0)
})
