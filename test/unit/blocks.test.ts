import test from 'ava'
import * as cbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { createHost } from '../../node/libp2p.ts'
import { pageCid } from '../../store/page.ts'
import { blockExchange } from '../../protocols/blocks/index.ts'
import type { BlockExchange } from '../../protocols/blocks/index.ts'

async function block (value: unknown): Promise<{ cid: CID, bytes: Uint8Array }> {
  const bytes = cbor.encode(value)
  return { cid: CID.createV1(cbor.code, await sha256.digest(bytes)), bytes }
}

async function pair (t: any, serve: (cid: CID) => Uint8Array | undefined) {
  const server = await createHost<{ blocks: BlockExchange }>({ services: { blocks: blockExchange({ blocks: { getBlock: async (cid) => serve(cid) } }) } })
  const client = await createHost<{ blocks: BlockExchange }>({ services: { blocks: blockExchange({ blocks: { getBlock: async () => undefined } }) } })
  t.teardown(async () => { await server.stop(); await client.stop() })
  await client.dial(server.getMultiaddrs()[0])
  return { server, client }
}

test('blocks are fetched verified, missing ones reported', async t => {
  const blocks = await Promise.all(Array.from({ length: 100 }, async (_, i) => block({ chunk: i, pad: new Uint8Array(i * 1000) })))
  const held = new Map(blocks.slice(0, 90).map(b => [b.cid.toString(), b.bytes]))
  const { server, client } = await pair(t, cid => held.get(cid.toString()))
  const got = new Map<string, Uint8Array>()
  const result = await client.services.blocks.fetch(server.peerId, blocks.map(b => b.cid), { onBlock: (cid, bytes) => got.set(cid.toString(), bytes) })
  t.is(result.received.length, 90)
  t.is(result.missing.length, 10)
  t.true(result.wireBytes > 0)
  for (const b of blocks.slice(0, 90)) t.deepEqual(got.get(b.cid.toString()), b.bytes)
})

test('a block that does not match its CID is detected', async t => {
  const good = await block({ a: 1 })
  const other = await block({ a: 2 })
  const { server, client } = await pair(t, () => other.bytes)
  const err = await t.throwsAsync(client.services.blocks.fetch(server.peerId, [good.cid]))
  t.is((err as any).code, 'ERR_PEER_MISBEHAVED')
})

test('with compress, answers come grouped and zstd-compressed, verified, missing ones reported', async t => {
  // manifest-like blocks: CID lists that share most of their bytes
  const page = (i: number): CID => pageCid(new Uint8Array([i & 0xff, i >> 8]))
  const blocks = await Promise.all(Array.from({ length: 80 }, async (_, i) => block({ entries: Array.from({ length: 400 }, (_, j) => page(i + j)) })))
  const held = new Map(blocks.slice(0, 70).map(b => [b.cid.toString(), b.bytes]))
  const { server, client } = await pair(t, cid => held.get(cid.toString()))
  const cids = blocks.map(b => b.cid)
  const plain = await client.services.blocks.fetch(server.peerId, cids)
  const got = new Map<string, Uint8Array>()
  const zstd = await client.services.blocks.fetch(server.peerId, cids, { compress: true, onBlock: (cid, bytes) => got.set(cid.toString(), bytes) })
  t.is(zstd.received.length, 70)
  t.deepEqual(zstd.missing.map(String), blocks.slice(70).map(b => b.cid.toString()))
  for (const b of blocks.slice(0, 70)) t.deepEqual(got.get(b.cid.toString()), b.bytes)
  t.true(zstd.wireBytes * 4 < plain.wireBytes, `${zstd.wireBytes} vs ${plain.wireBytes}`)
})

test('a grouped block that does not match its CID is detected', async t => {
  const good = await block({ a: 1, pad: new Uint8Array(5000) })
  const other = await block({ a: 2, pad: new Uint8Array(5000) })
  const { server, client } = await pair(t, () => other.bytes)
  const err = await t.throwsAsync(client.services.blocks.fetch(server.peerId, [good.cid], { compress: true }))
  t.is((err as any).code, 'ERR_PEER_MISBEHAVED')
})
