import test from 'ava'
import type { ExecutionContext } from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Repo } from '../../store/repo.ts'
import { prefixLookup } from '../../store/store.ts'
import fc from 'fast-check'
import { encode as cborEncode } from '@ipld/dag-cbor'
import { zstdCompressSync } from 'node:zlib'
import type { CID } from 'multiformats/cid'
import { pageCid } from '../../store/page.ts'
import { PeerMisbehavedError, PREFIX_BYTES } from '../../protocols/pages/index.ts'
import { decodeAnyRequest, decodeHeldResponse, encodeHeldResponse, encodePrefixRequest, encodeThinRequest, isHeldFrame } from '../../protocols/pages/codec.ts'
import { decodeThinFrame, encodeThinAbsent, encodeThinFrames, THIN_ENTRY_BYTES, THIN_FRAME_ENTRIES, THIN_PAGE, zeroRunLength } from '../../protocols/pages/codec.ts'
import type { ThinManifest } from '../../protocols/pages/codec.ts'
import { PrefixIndex } from '../../node/migration/prefix-index.ts'
import { randomPages } from '../fixtures/memory-page-store.ts'
import { LyingPageStore, connect, pageNode, repoNode } from '../fixtures/page-nodes.ts'

async function * slotsOf (cids: Array<CID | undefined>): AsyncGenerator<{ cid?: CID }> {
  for (const cid of cids) yield { cid }
}

async function thinOf (cids: Array<CID | undefined>): Promise<{ frames: Uint8Array[], thin: ThinManifest }> {
  const frames: Uint8Array[] = []
  for await (const frame of encodeThinFrames(3, slotsOf(cids), 3)) frames.push(frame)
  const parts = frames.map(f => decodeThinFrame(f))
  const count = parts.reduce((n, p) => n + p.count, 0)
  const entries = new Uint8Array(count * THIN_ENTRY_BYTES)
  let at = 0
  for (const p of parts) { entries.set(p.entries, at); at += p.entries.byteLength }
  return { frames, thin: { entries, count } }
}

/** The digest prefixes of `pages`, concatenated, as a prefix request carries them. */
function prefixesOf (pages: Array<{ cid: CID }>): Uint8Array {
  const prefixes = new Uint8Array(pages.length * PREFIX_BYTES)
  pages.forEach((p, i) => { prefixes.set(p.cid.multihash.digest.subarray(0, PREFIX_BYTES), i * PREFIX_BYTES) })
  return prefixes
}

/** A real repository serving 600 random pages, a client connected to it, and 40 pages it lacks. */
async function heldAndAbsent (t: ExecutionContext): Promise<{ server: Awaited<ReturnType<typeof repoNode>>, client: Awaited<ReturnType<typeof pageNode>>, held: ReturnType<typeof randomPages>, absent: ReturnType<typeof randomPages> }> {
  const server = await repoNode(t)
  const held = randomPages(600)
  await server.repo.store.putMany(held)
  const absent = randomPages(40)
  const client = await pageNode(t)
  await connect(client.node, server.addr)
  return { server, client, held, absent }
}

test('prefix and thin-manifest requests round-trip; bad shapes are refused', t => {
  const root = pageCid(new Uint8Array([1]))
  const thin = decodeAnyRequest(encodeThinRequest({ id: 4, thin: root }))
  t.true('thin' in thin && thin.id === 4 && thin.thin.equals(root))
  const prefixes = new Uint8Array(3 * PREFIX_BYTES).map((_, i) => i)
  const req = decodeAnyRequest(encodePrefixRequest({ id: 5, prefixes, compress: 'zstd' }))
  t.true('prefixes' in req && req.compress === 'zstd')
  t.deepEqual((req as any).prefixes, prefixes)
  t.throws(() => decodeAnyRequest(cborEncode({ id: 1, prefixes: new Uint8Array(7) })), { code: 'ERR_INVALID_MESSAGE' })
  t.throws(() => decodeAnyRequest(cborEncode({ id: 1, prefixes: new Uint8Array(0) })), { code: 'ERR_INVALID_MESSAGE' })
  t.throws(() => decodeAnyRequest(cborEncode({ id: 1, prefixes: new Uint8Array(257 * PREFIX_BYTES) })), { code: 'ERR_INVALID_MESSAGE' })
  t.throws(() => decodeAnyRequest(cborEncode({ id: 1, prefixes: new Uint8Array(8), refs: new Uint8Array(32) })), { code: 'ERR_INVALID_MESSAGE' })
  t.throws(() => decodeAnyRequest(cborEncode({ id: 1, thin: 'x' })), { code: 'ERR_INVALID_MESSAGE' })
})

test('thin-manifest frames carry zero runs and prefixes in slot order, across frames', async t => {
  const pages = randomPages(50).map(p => p.cid)
  const cids: Array<CID | undefined> = []
  // more entries than one frame holds: pages with zero runs between them
  for (let i = 0; cids.length < THIN_FRAME_ENTRIES * 2 + 100; i++) {
    cids.push(pages[i % pages.length])
    for (let z = 0; z < i % 3; z++) cids.push(undefined)
  }
  const { frames, thin } = await thinOf(cids)
  t.true(frames.length >= 2)
  t.true(decodeThinFrame(frames[frames.length - 1]).last)
  const back: Array<string | undefined> = []
  for (let i = 0; i < thin.count; i++) {
    const at = i * THIN_ENTRY_BYTES
    if (thin.entries[at] === THIN_PAGE) back.push(Buffer.from(thin.entries.subarray(at + 1, at + 1 + PREFIX_BYTES)).toString('hex'))
    else for (let n = zeroRunLength(thin, i); n > 0; n--) back.push(undefined)
  }
  t.deepEqual(back, cids.map(c => c == null ? undefined : Buffer.from(c.multihash.digest.subarray(0, PREFIX_BYTES)).toString('hex')))
  const index = new PrefixIndex(thin)
  t.is(index.totalSlots, cids.length)
  t.is(index.size, pages.length)
  t.is(index.slots.reduce((a, b) => a + b, 0), cids.filter(c => c != null).length)
  t.true(index.indexOf(pages[7].multihash.digest) >= 0)
  t.is(index.indexOf(pageCid(new Uint8Array([42])).multihash.digest), -1)
  t.true(decodeThinFrame(encodeThinAbsent(9)).absent)
})

test('thin-manifest decoder: garbage, bombs and bad entries are typed errors', t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), bytes => {
    try { decodeThinFrame(bytes) } catch (err: any) { if (err.code !== 'ERR_INVALID_MESSAGE') throw err }
  }), { numRuns: 2000 })
  const header = (flags: number, count: number): Buffer => { const h = Buffer.alloc(10); h[0] = 3; h[1] = flags; h.writeUInt32BE(count, 6); return h }
  const bomb = Buffer.concat([header(3, 2), zstdCompressSync(Buffer.alloc(1 << 20))])
  t.throws(() => decodeThinFrame(bomb), { code: 'ERR_INVALID_MESSAGE' })
  t.throws(() => decodeThinFrame(Buffer.concat([header(1, 1), Buffer.alloc(THIN_ENTRY_BYTES)])), { code: 'ERR_INVALID_MESSAGE', message: /zero run/ })
  t.throws(() => decodeThinFrame(Buffer.concat([header(1, 1), Buffer.from([7]), Buffer.alloc(8)])), { code: 'ERR_INVALID_MESSAGE', message: /kind/ })
  t.throws(() => decodeThinFrame(header(1, THIN_FRAME_ENTRIES + 1)), { code: 'ERR_INVALID_MESSAGE' })
})

test('pages fetched by prefix from a real store are hashed and named; prefixes it lacks are skipped', async t => {
  const { server, client, held, absent } = await heldAndAbsent(t)
  const ask = [...held, ...absent]
  const prefixes = prefixesOf(ask)
  const got = new Map<string, Uint8Array>()
  const result = await client.node.services.pages.fetchByPrefix(server.node.peerId, prefixes, {
    compress: 'zstd',
    onPage: (cid, bytes) => { got.set(cid.toString(), Uint8Array.prototype.slice.call(bytes)) }
  })
  t.is(result.received.length, held.length)
  for (const p of held) t.true(Buffer.from(got.get(p.cid.toString())!).equals(p.bytes))
  for (const p of absent) t.false(got.has(p.cid.toString()))
})

test('a held query tells which prefixes a real store holds, as bits, without moving pages', async t => {
  const { server, client, held, absent } = await heldAndAbsent(t)
  // interleaved, across several requests (256 prefixes each), and a count not a multiple of 8
  const ask = [...held.slice(0, 300), ...absent.slice(0, 20), ...held.slice(300), ...absent.slice(20, 37)]
  const prefixes = prefixesOf(ask)
  const { held: bits, wireBytes } = await client.node.services.pages.heldByPrefix(server.node.peerId, prefixes)
  const heldSet = new Set(held.map(p => p.cid.toString()))
  ask.forEach((p, i) => { t.is((bits[i >> 3] >> (i & 7)) & 1, heldSet.has(p.cid.toString()) ? 1 : 0, `prefix ${i}`) })
  // a bitmap, not pages: far less than one page per held prefix
  t.true(wireBytes < ask.length, `${wireBytes} wire bytes`)
})

test('held frames: round trip, and garbage or bits past the count are typed errors', t => {
  const bits = new Uint8Array([0b10100101, 0b00000011])
  const frame = encodeHeldResponse({ id: 7, count: 10, bits })
  t.true(isHeldFrame(frame))
  const back = decodeHeldResponse(frame)
  t.is(back.id, 7)
  t.is(back.count, 10)
  t.deepEqual([...back.bits], [...bits])
  const extra = Uint8Array.from(frame)
  extra[extra.length - 1] |= 0x80
  t.throws(() => decodeHeldResponse(extra), { code: 'ERR_INVALID_MESSAGE' })
  t.throws(() => decodeHeldResponse(frame.subarray(0, frame.length - 1)), { code: 'ERR_INVALID_MESSAGE' })
  t.throws(() => decodeHeldResponse(encodeHeldResponse({ id: 1, count: 300, bits: new Uint8Array(38) }), 256), { code: 'ERR_INVALID_MESSAGE' })
  const req = decodeAnyRequest(encodePrefixRequest({ id: 3, prefixes: new Uint8Array(16), held: true }))
  t.deepEqual(req, { id: 3, prefixes: new Uint8Array(16), held: true })
  t.throws(() => decodeAnyRequest(cborEncode({ id: 3, prefixes: new Uint8Array(16), held: 1 })), { code: 'ERR_INVALID_MESSAGE' })
})

test('a server answering a prefix with another page is caught as misbehaving', async t => {
  const pages = randomPages(10)
  const inner = (await repoNode(t)).repo.store
  await inner.putMany(pages)
  const liar = new LyingPageStore(inner)
  ;(liar as any).resolvePrefixes = async (p: Uint8Array) => inner.resolvePrefixes!(p)
  liar.lie(pages[4].cid, randomPages(1)[0].bytes)
  const server = await pageNode(t, { store: liar })
  const client = await pageNode(t)
  await connect(client.node, server.addr)
  const prefixes = prefixesOf(pages)
  const err = await t.throwsAsync(client.node.services.pages.fetchByPrefix(server.node.peerId, prefixes))
  t.true(err instanceof PeerMisbehavedError, String(err))
  t.regex(err!.message, /another digest/)
})

test('manifestThin gets an image\'s slots from a real repository, or none for an image it lacks', async t => {
  const server = await repoNode(t, { pages: {} })
  const pages = randomPages(300)
  const cids = pages.map(p => p.cid)
  const slots = await (async () => { const out: Array<CID | undefined> = []; for (let i = 0; i < 1000; i++) out.push(i % 4 === 0 ? undefined : cids[i % cids.length]); return out })()
  const serverNode = await pageNode(t, { store: server.repo.store, pages: { slots: (root) => { if (!root.equals(cids[0])) throw new Error('not held'); return slotsOf(slots) } } })
  const client = await pageNode(t)
  await connect(client.node, serverNode.addr)
  const { thin, wireBytes } = await client.node.services.pages.manifestThin(serverNode.node.peerId, cids[0])
  t.truthy(thin)
  t.is(new PrefixIndex(thin!).totalSlots, 1000)
  t.true(wireBytes < 1000 * 9)
  t.is((await client.node.services.pages.manifestThin(serverNode.node.peerId, cids[1])).thin, undefined)
  const err = await t.throwsAsync(client.node.services.pages.manifestThin(serverNode.node.peerId, cids[0], { maxEntries: 10 }))
  t.true(err instanceof PeerMisbehavedError)
})

test('store.resolvePrefixes finds the digest of a held page by its prefix', async t => {
  const server = await repoNode(t)
  const held = randomPages(200)
  await server.repo.store.putMany(held)
  const ask = [...held.slice(0, 50), ...randomPages(5)]
  const prefixes = new Uint8Array(ask.length * 8)
  ask.forEach((p, i) => { prefixes.set(p.cid.multihash.digest.subarray(0, 8), i * 8) })
  const digests = await server.repo.store.resolvePrefixes!(prefixes)
  for (let i = 0; i < 50; i++) t.deepEqual(digests[i], new Uint8Array(ask[i].cid.multihash.digest))
  for (let i = 50; i < 55; i++) t.is(digests[i], undefined)
})

test('PrefixIndex lists missing pages in the order they first appear in the image', async t => {
  const pages = randomPages(20).map(p => p.cid)
  const cids = [pages[5], undefined, pages[2], pages[5], pages[9], undefined, undefined, pages[2], pages[0]]
  const { thin } = await thinOf(cids)
  const index = new PrefixIndex(thin)
  const hex = (c: CID): string => Buffer.from(c.multihash.digest.subarray(0, PREFIX_BYTES)).toString('hex')
  const order = (m: Uint8Array): string[] => Array.from({ length: m.byteLength / PREFIX_BYTES }, (_, i) => Buffer.from(m.subarray(i * PREFIX_BYTES, (i + 1) * PREFIX_BYTES)).toString('hex'))
  t.deepEqual(order(index.pack(index.missing().indexes)), [pages[5], pages[2], pages[9], pages[0]].map(hex))
  index.found[index.indexOf(pages[2].multihash.digest)] = 1
  const first = index.missing(0, 2)
  t.deepEqual(order(index.pack(first.indexes)), [pages[5], pages[9]].map(hex))
  t.deepEqual(order(index.pack(index.missing(first.next).indexes)), [pages[0]].map(hex))
  t.is(index.slots[index.indexOf(pages[5].multihash.digest)], 2)
})

test('prefixLookup seeks a large index for a request of prefixes and scans a small one', t => {
  // a 4 GiB image's index scanned per 256-prefix request stalled its source past the idle timeout
  t.is(prefixLookup(256, 734_336), 'seek')
  t.is(prefixLookup(256, 4096), 'scan')
  t.is(prefixLookup(1, 0), 'scan')
})

for (const [mode, tableMax] of [['for a few prefixes and for many, from the index, then from the page table', undefined], ['for a few prefixes and for many, from the index only (no page table)', 0]] as const) {
test(`store.resolvePrefixes gives the same answers ${mode}`, async t => {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-prefixes-'))
  await (await Repo.init(dir)).close()
  const repo = await Repo.open(dir, { pageTableMaxPages: tableMax })
  t.teardown(async () => { await repo.close(); await rm(dir, { recursive: true, force: true }) })
  const server = { repo }
  const held = randomPages(2000)
  await server.repo.store.putMany(held)
  const pack = (pages: typeof held): Uint8Array => {
    const out = new Uint8Array(pages.length * 8)
    pages.forEach((p, i) => { out.set(p.cid.multihash.digest.subarray(0, 8), i * 8) })
    return out
  }
  // sorted by digest so the first and last span most of the key space
  const byDigest = [...held].sort((a, b) => Buffer.compare(a.cid.multihash.digest, b.cid.multihash.digest))
  const few = [byDigest[0], byDigest[1000], byDigest[1999], randomPages(1)[0]]
  const many = [...held, ...randomPages(30)]
  t.is(prefixLookup(few.length, held.length), 'seek')
  t.is(prefixLookup(many.length, held.length), 'scan')
  // the second `many` is answered from the page table once its background load is done
  const tableLoaded = async (): Promise<void> => {
    for (let i = 0; i < 100 && tableMax == null && (repo.store as any).table == null; i++) await new Promise(resolve => setTimeout(resolve, 20))
  }
  for (const [round, ask] of [few, many, many].entries()) {
    if (round === 2) await tableLoaded()
    const digests = await server.repo.store.resolvePrefixes!(pack(ask))
    ask.forEach((p, i) => {
      if (held.includes(p)) t.deepEqual(digests[i], new Uint8Array(p.cid.multihash.digest))
      else t.is(digests[i], undefined)
    })
  }
})
}
