import test from 'ava'
import fc from 'fast-check'
import type { CID } from 'multiformats/cid'
import { pageCid } from '../../store/page.ts'
import { PeerMisbehavedError } from '../../protocols/pages/index.ts'
import {
  decodeAnyRequest, decodePatchFrame, decodeSimilarResponse, encodePatchRequest, encodePatchResponse, encodeRequest,
  encodeSimilarRequest, encodeSimilarResponse, PATCH_FRAME_ENTRIES
} from '../../protocols/pages/codec.ts'
import type { ManifestPatch } from '../../protocols/pages/codec.ts'
import { MemoryPageStore, randomPages } from '../fixtures/memory-page-store.ts'
import { LyingPageStore, connect, pageNode } from '../fixtures/page-nodes.ts'

/** `page` with `n` bytes rewritten from `at`: a partly rewritten page. */
function dirty (page: Uint8Array, at: number, n: number, seed: number): Uint8Array {
  const out = Uint8Array.prototype.slice.call(page)
  for (let i = 0; i < n; i++) out[at + i] = (seed * 31 + i * 7) & 0xff
  return out
}

test('similar-pages and manifest-patch messages round-trip', t => {
  const root = pageCid(new Uint8Array([1]))
  const similar = decodeAnyRequest(encodeSimilarRequest({ id: 7, similar: root, indexes: [3, 4, 900, 70000] }))
  t.like(similar, { id: 7, indexes: [3, 4, 900, 70000] })
  t.true('similar' in similar && similar.similar.equals(root))
  const patchReq = decodeAnyRequest(encodePatchRequest({ id: 8, patch: root }))
  t.true('patch' in patchReq && patchReq.id === 8 && patchReq.patch.equals(root))
  const refs = [pageCid(new Uint8Array([2])), null, pageCid(new Uint8Array([3]))]
  t.deepEqual(decodeSimilarResponse(encodeSimilarResponse({ id: 9, refs }), 3).refs.map(r => r?.toString() ?? null), refs.map(r => r?.toString() ?? null))

  const n = PATCH_FRAME_ENTRIES + 10
  const patch: ManifestPatch = { basis: root, slots: new Uint32Array(n).map((_, i) => i * 2), kinds: new Uint8Array(n).map((_, i) => i % 3 === 0 ? 0 : 1), digests: new Uint8Array(n * 32).map((_, i) => i) }
  const frames = encodePatchResponse(5, patch)
  t.is(frames.length, 2)
  const parts = frames.map(f => decodePatchFrame(f))
  t.deepEqual(parts.map(p => p.last), [false, true])
  const slots = parts.flatMap(p => p.slots)
  t.deepEqual(slots, [...patch.slots])
  t.deepEqual(new Uint8Array(parts[1].digests[1]), patch.digests.slice((PATCH_FRAME_ENTRIES + 1) * 32, (PATCH_FRAME_ENTRIES + 2) * 32))
  const none = encodePatchResponse(6, undefined)
  t.is(none.length, 1)
  t.is(decodePatchFrame(none[0]).basis, undefined)
})

test('request decoders refuse refs without compression, refs of the wrong length and descending indexes', t => {
  const cid = pageCid(new Uint8Array([1]))
  t.throws(() => decodeAnyRequest(encodeRequest({ id: 1, cids: [cid], refs: [cid] })), { code: 'ERR_INVALID_MESSAGE' })
  t.throws(() => decodeAnyRequest(encodeRequest({ id: 1, cids: [cid], compress: 'zstd', refs: [cid, null] })), { code: 'ERR_INVALID_MESSAGE' })
  t.throws(() => decodeAnyRequest(encodeSimilarRequest({ id: 1, similar: cid, indexes: [5, 5] })), { code: 'ERR_INVALID_MESSAGE' })
})

test('fuzz: random bytes never crash the similar-pages and manifest-patch decoders', t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(20), (bytes, count) => {
    for (const decode of [() => decodePatchFrame(bytes), () => decodeSimilarResponse(bytes, count)]) {
      try { decode() } catch (err: any) { if (err.code !== 'ERR_INVALID_MESSAGE') throw err }
    }
  }), { numRuns: 2000 })
  t.pass()
})

test('a partly rewritten page travels compressed against the reference the client holds, and verifies', async t => {
  const olds = randomPages(300)
  const news = olds.map((p, i) => {
    const bytes = dirty(p.bytes, (i * 97) % 3000, 200, i)
    return { cid: pageCid(bytes), bytes }
  })
  const store = new MemoryPageStore()
  await store.putMany([...olds, ...news])
  const server = await pageNode(t, { store })
  const client = await pageNode(t)
  await connect(client.node, server.addr)

  const plain = await client.node.services.pages.fetch(server.node.peerId, news.map(p => p.cid), { compress: 'zstd' })
  const got = new Map<string, Uint8Array>()
  const delta = await client.node.services.pages.fetch(server.node.peerId, news.map(p => p.cid), {
    compress: 'zstd',
    refs: olds,
    onPage: (cid: CID, bytes: Uint8Array) => { got.set(cid.toString(), Uint8Array.prototype.slice.call(bytes)) }
  })
  t.is(delta.received.length, news.length)
  t.is(delta.deltaPages, news.length)
  t.is(plain.deltaPages, 0)
  for (const p of news) t.deepEqual(got.get(p.cid.toString()), p.bytes)
  t.true(delta.wireBytes * 5 < plain.wireBytes, `delta ${delta.wireBytes} B vs plain ${plain.wireBytes} B`)
})

test('a reference the server does not hold costs nothing but the compression', async t => {
  const olds = randomPages(50)
  const news = olds.map((p, i) => { const bytes = dirty(p.bytes, 100, 64, i); return { cid: pageCid(bytes), bytes } })
  const store = new MemoryPageStore()
  await store.putMany(news)
  const server = await pageNode(t, { store })
  const client = await pageNode(t)
  await connect(client.node, server.addr)
  const res = await client.node.services.pages.fetch(server.node.peerId, news.map(p => p.cid), { compress: 'zstd', refs: olds })
  t.is(res.received.length, news.length)
  t.is(res.deltaPages, 0)
})

test('a server whose delta does not rebuild the page is caught as misbehaving', async t => {
  const olds = randomPages(20)
  const news = olds.map((p, i) => { const bytes = dirty(p.bytes, 0, 100, i); return { cid: pageCid(bytes), bytes } })
  const inner = new MemoryPageStore()
  await inner.putMany([...olds, ...news])
  const liar = new LyingPageStore(inner)
  // the server compresses a page that is not the one asked for
  liar.lie(news[3].cid, dirty(news[3].bytes, 500, 10, 99))
  const server = await pageNode(t, { store: liar })
  const client = await pageNode(t)
  await connect(client.node, server.addr)
  const err = await t.throwsAsync(client.node.services.pages.fetch(server.node.peerId, news.map(p => p.cid), { compress: 'zstd', refs: olds }))
  t.true(err instanceof PeerMisbehavedError, String(err))
  t.regex(err!.message, /fails verification/)
})

test('similarPages asks the server and returns its answer in order', async t => {
  const refs = randomPages(3).map(p => p.cid)
  const seen: number[][] = []
  const server = await pageNode(t, {
    pages: {
      similar: async (_root, indexes) => {
        seen.push(indexes)
        return indexes.map(i => i === 10 ? null : refs[i % 3])
      }
    }
  })
  const client = await pageNode(t)
  await connect(client.node, server.addr)
  const root = pageCid(new Uint8Array([9]))
  const answer = await client.node.services.pages.similarPages(server.node.peerId, root, [1, 2, 10, 30])
  t.deepEqual(seen, [[1, 2, 10, 30]])
  t.deepEqual(answer.map(r => r?.toString() ?? null), [refs[1], refs[2], null, refs[0]].map(r => r?.toString() ?? null))
  t.is((await client.node.services.pages.manifestPatch(server.node.peerId, root)).patch, undefined)
})
