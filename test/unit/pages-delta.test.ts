import test from 'ava'
import fc from 'fast-check'
import { encode as cborEncode } from '@ipld/dag-cbor'
import type { CID } from 'multiformats/cid'
import { pageCid } from '../../store/page.ts'
import { PeerMisbehavedError } from '../../protocols/pages/index.ts'
import {
  decodeAnyRequest, decodePatchFrame, encodePatchRequest, encodePatchResponse, encodeRequest, PATCH_FRAME_ENTRIES
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

test('manifest-patch messages round-trip', t => {
  const root = pageCid(new Uint8Array([1]))
  const patchReq = decodeAnyRequest(encodePatchRequest({ id: 8, patch: root }))
  t.true('patch' in patchReq && patchReq.id === 8 && patchReq.patch.equals(root))

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

test('the request decoder refuses refs without compression and refs that do not match their mask', t => {
  const cid = pageCid(new Uint8Array([1]))
  const digest = cid.multihash.digest
  t.throws(() => decodeAnyRequest(encodeRequest({ id: 1, cids: [cid], refs: [cid] })), { code: 'ERR_INVALID_MESSAGE' })
  t.throws(() => decodeAnyRequest(cborEncode({ id: 1, pages: digest, compress: 'zstd', refMask: new Uint8Array([1, 0]), refs: digest })), { code: 'ERR_INVALID_MESSAGE' })
  t.throws(() => decodeAnyRequest(cborEncode({ id: 1, pages: digest, compress: 'zstd', refMask: new Uint8Array([1]), refs: new Uint8Array(0) })), { code: 'ERR_INVALID_MESSAGE' })
  t.throws(() => decodeAnyRequest(cborEncode({ id: 1, pages: digest.subarray(1), compress: 'zstd' })), { code: 'ERR_INVALID_MESSAGE' })
  const ok = decodeAnyRequest(encodeRequest({ id: 1, cids: [cid, cid], compress: 'zstd', refs: [null, cid] }))
  t.true('refs' in ok && ok.refs?.[0] == null && ok.refs?.[1]?.equals(cid) === true)
})

test('fuzz: random bytes never crash the manifest-patch decoder', t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), bytes => {
    try { decodePatchFrame(bytes) } catch (err: any) { if (err.code !== 'ERR_INVALID_MESSAGE') throw err }
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

test('manifestPatch returns the patch the server gives, or none', async t => {
  const root = pageCid(new Uint8Array([9]))
  const basis = pageCid(new Uint8Array([8]))
  const digest = pageCid(new Uint8Array([7])).multihash.digest
  const server = await pageNode(t, {
    pages: {
      patch: async (image) => image.equals(root) ? { basis, slots: Uint32Array.from([4, 9]), kinds: Uint8Array.from([0, 1]), digests: Uint8Array.from([...new Uint8Array(32), ...digest]) } : undefined
    }
  })
  const client = await pageNode(t)
  await connect(client.node, server.addr)
  const { patch, wireBytes } = await client.node.services.pages.manifestPatch(server.node.peerId, root)
  t.true(patch?.basis.equals(basis))
  t.deepEqual([...patch!.slots], [4, 9])
  t.deepEqual([...patch!.kinds], [0, 1])
  t.deepEqual(patch!.digests.slice(32), new Uint8Array(digest))
  t.true(wireBytes > 0)
  t.is((await client.node.services.pages.manifestPatch(server.node.peerId, basis)).patch, undefined)
})
