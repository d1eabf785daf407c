import test from 'ava'
import * as cbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { createHost } from '../../node/libp2p.ts'
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
