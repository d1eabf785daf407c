import test from 'ava'
import { randomBytes } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { lpStream } from '@libp2p/utils'
import { startNetwork } from '../fixtures/network.ts'
import type { NetworkNode } from '../fixtures/network.ts'
import { waitFor } from '../fixtures/wait.ts'
import { PROTOCOL, MAX_MESSAGE_SIZE } from '../../protocols/providers/index.ts'
import { closest, kadKeyOf, peerKadKey, recordKey } from '../../protocols/providers/keyspace.ts'

const RAW = 0x55
const randomCids = (n: number): CID[] => Array.from({ length: n }, () => CID.createV1(RAW, Digest.create(sha256.code, randomBytes(32))))

async function * inBatches (cids: CID[], size: number): AsyncGenerator<CID[]> {
  for (let i = 0; i < cids.length; i += size) yield cids.slice(i, i + size)
}

// one shared 7-node network for the tests that do not change its membership
const cleanups: Array<() => Promise<void> | void> = []
let shared: Promise<NetworkNode[]> | undefined
const network = async (): Promise<NetworkNode[]> => {
  // small frames so every stream carries more frames than the pipelining window
  shared ??= startNetwork({ teardown: (fn: () => Promise<void> | void) => { cleanups.push(fn) } }, 7, {
    providers: { addBatchSize: 256, getBatchSize: 256, window: 3 }
  })
  return shared
}
test.after.always(async () => { for (const fn of cleanups.reverse()) await fn() })

test.serial('5,000 CIDs published in batches are found by every other node, on the 3 closest peers', async t => {
  const nodes = await network()
  const publisher = nodes[0]
  const cids = randomCids(5000)
  const result = await publisher.providers.provide(inBatches(cids, 1000))
  t.is(result.records, 5000)
  t.is(result.replicas, 15_000)
  t.is(result.failedReplicas, 0)

  for (const node of nodes.slice(1)) {
    const found = await node.providers.findProviders(cids)
    const missing = cids.filter(cid => !(found.get(cid.toString()) ?? []).some(p => p.equals(publisher.host.peerId)))
    t.is(missing.length, 0, `node ${node.host.peerId} misses ${missing.length} CIDs`)
  }

  // every record sits exactly on the 3 peers closest to its kad key (whole network is known)
  const peers = nodes.map(n => ({ node: n, kadId: peerKadKey(n.host.peerId) }))
  const held = await Promise.all(nodes.map(async n => n.providers.store.get(cids.map(c => recordKey(c.multihash.digest)))))
  const me = publisher.host.peerId.toMultihash().bytes
  let wrong = 0
  for (let i = 0; i < cids.length; i++) {
    const holders = nodes.filter((n, j) => held[j][i].some(p => Buffer.compare(p, me) === 0))
    const expected = closest(kadKeyOf(cids[i].multihash.bytes), peers, 3).map(p => p.node)
    if (holders.length < 3 || !expected.every(e => holders.includes(e))) wrong++
  }
  t.is(wrong, 0)
  t.true(publisher.providers.stats.published >= 15_000)
})

test.serial('records that expire are no longer returned', async t => {
  const nodes = await network()
  const cids = randomCids(200)
  await nodes[1].providers.provide(cids, { ttl: 1 })
  await waitFor(async () => {
    const found = await nodes[2].providers.resolve(cids, { queryAll: true })
    return found.every(list => list.length === 0)
  }, { timeout: 10_000, message: 'expired records were still returned' })
  t.pass()
})

test.serial('republish re-announces everything the source lists', async t => {
  const nodes = await network()
  const cids = randomCids(300)
  const node = nodes[3]
  ;(node.providers as any).source = () => inBatches(cids, 128)
  const before = node.providers.stats.refreshed
  const result = await node.providers.republish()
  t.is(result.records, 300)
  t.is(node.providers.stats.refreshed - before, 300)
  const found = await nodes[4].providers.resolve(cids)
  t.true(found.every(list => list.some(p => p.equals(node.host.peerId))))
})

test.serial('keys go out as 16 bytes each; pages sharing a 16-byte digest prefix share records, and each is still found', async t => {
  const nodes = await network()
  const before = nodes[1].providers.stats
  const cids = randomCids(3000)
  const result = await nodes[1].providers.provide(cids)
  const after = nodes[1].providers.stats
  const keys = after.sentKeys - before.sentKeys
  const bytes = after.sentBytes - before.sentBytes
  t.true(keys >= result.replicas - cids.length, `${keys} keys sent`) // at most one copy each stays local
  t.true(bytes / keys > 16 && bytes / keys < 17, `${(bytes / keys).toFixed(3)} bytes per key`)

  // two pages whose digests differ only after byte 16: different kad positions, same key
  const prefix = randomBytes(16)
  const [a, b] = [1, 2].map(n => CID.createV1(RAW, Digest.create(sha256.code, Buffer.concat([prefix, Buffer.alloc(16, n)]))))
  await nodes[2].providers.provide([a])
  await nodes[3].providers.provide([b])
  const [forA, forB] = await nodes[4].providers.resolve([a, b], { queryAll: true })
  t.true(forA.some(p => p.equals(nodes[2].host.peerId)))
  t.true(forB.some(p => p.equals(nodes[3].host.peerId)))
  // any extra holder listed is the other page's: the puller asks it, hears "missing", re-plans
  for (const p of [...forA, ...forB]) t.true(p.equals(nodes[2].host.peerId) || p.equals(nodes[3].host.peerId))
})

async function expectReset (t: any, nodes: NetworkNode[], frame: Uint8Array): Promise<void> {
  const stream = await nodes[1].host.dialProtocol(nodes[2].host.peerId, PROTOCOL)
  const closed = new Promise<any>(resolve => stream.addEventListener('close', evt => { resolve(evt) }, { once: true }))
  stream.send(frame)
  const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_SIZE })
  const err = await t.throwsAsync(lp.read({ signal: AbortSignal.timeout(10_000) }))
  t.not(err?.name, 'TimeoutError', 'the server must reset, not stall')
  await closed
  t.not(stream.status, 'open')
}

test.serial('malformed and oversize frames get the stream reset, and the server keeps serving', async t => {
  const nodes = await network()
  // a frame that is not dag-cbor
  await expectReset(t, nodes, Uint8Array.from([3, 0xff, 0xfe, 0xfd]))
  // a well-formed frame with a bad message (keys not a multiple of 16 bytes)
  const { encode } = await import('@ipld/dag-cbor')
  const bad = encode({ type: 'get', keys: new Uint8Array(17) })
  await expectReset(t, nodes, Uint8Array.from([bad.byteLength, ...bad]))
  // a length prefix beyond the cap
  const big = MAX_MESSAGE_SIZE + 1
  await expectReset(t, nodes, Uint8Array.from([(big & 0x7f) | 0x80, ((big >> 7) & 0x7f) | 0x80, big >> 14, 1, 2, 3]))
  // still healthy
  const cids = randomCids(50)
  await nodes[1].providers.provide(cids)
  const found = await nodes[2].providers.resolve(cids)
  t.true(found.every(list => list.some(p => p.equals(nodes[1].host.peerId))))
})

test('a stopped peer does not make publish fail; its records move to the next closest peer', async t => {
  const nodes = await startNetwork(t, 6)
  const stopped = nodes[4]
  // publish once first so the publisher has the region's peers cached, stopped peer included
  await nodes[0].providers.provide(randomCids(10))
  await stopped.host.stop()
  const cids = randomCids(2000)
  const result = await nodes[0].providers.provide(cids)
  t.is(result.records, 2000)
  t.is(result.failedReplicas, 0)
  t.is(result.replicas, 6000)
  t.is(result.peers, 4) // 5 live peers minus the publisher itself
  for (const node of [nodes[1], nodes[5]]) {
    const found = await node.providers.resolve(cids)
    t.true(found.every(list => list.some(p => p.equals(nodes[0].host.peerId))))
  }
})
