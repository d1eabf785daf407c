/**
 * A replica keeps at most `maxRecordsPerPeer` provider entries per providing peer: a flood of
 * ADDs from one member stops at the bound, refreshes of what it holds and other peers' records
 * are still accepted (record store, then real libp2p nodes on loopback with a raw ADD flood).
 */
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { lpStream } from '@libp2p/utils'
import { RecordStore } from '../../protocols/providers/record-store.ts'
import { KEY_LENGTH, MAX_MESSAGE_SIZE, PROTOCOL } from '../../protocols/providers/index.ts'
import { decodeResponse, encodeMessage, packKeys } from '../../protocols/providers/codec.ts'
import { recordKey } from '../../protocols/providers/keyspace.ts'
import { startNetwork } from '../fixtures/network.ts'

const keys = (n: number): Uint8Array[] => Array.from({ length: n }, () => randomBytes(KEY_LENGTH))
const peer = (n: number): Uint8Array => Uint8Array.from([0, 36, 8, 1, 18, 32, ...new Uint8Array(32).fill(n)])

async function tempStore (t: any, max: number): Promise<{ db: ClassicLevel<any, any>, store: RecordStore, clock: { now: number } }> {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-hostile-records-'))
  const db = new ClassicLevel(join(dir, 'db'))
  await db.open()
  t.teardown(async () => { await db.close(); await rm(dir, { recursive: true, force: true }) })
  const clock = { now: 1_000_000 }
  return { db, store: new RecordStore({ db, maxRecordsPerPeer: max, now: () => clock.now }), clock }
}

test('a flood of ADDs from one peer stops at its bound; refreshes and other peers still go in', async t => {
  const { db, store, clock } = await tempStore(t, 1000)
  await store.load()
  const flood = keys(5 * 400)
  let written = 0
  for (let i = 0; i < 5; i++) written += await store.add(peer(1), flood.slice(i * 400, (i + 1) * 400), 2_000_000)
  t.is(written, 1000)
  t.is(await store.add(peer(1), keys(10), 2_000_000), 0)
  // refreshing what it holds is always accepted
  t.is(await store.add(peer(1), flood.slice(0, 400), 3_000_000), 400)
  const theirs = keys(300)
  t.is(await store.add(peer(2), theirs, 2_000_000), 300)
  t.true((await store.get(theirs)).every(list => list.length === 1))
  t.is(await store.size(), 1300)

  // counts survive a restart (the load scan counts), and a sweep of expired entries frees room
  const again = new RecordStore({ db, maxRecordsPerPeer: 1000, now: () => clock.now })
  await again.load()
  t.is(await again.add(peer(1), keys(10), 2_000_000), 0)
  clock.now = 2_500_000 // entries expiring at 2 000 000 are gone, the 400 refreshed remain
  await again.sweep()
  t.is(await again.add(peer(1), keys(700), 4_000_000), 600)
})

test('before the filter is loaded every ADD key counts: the bound holds from the first ADD', async t => {
  const { store } = await tempStore(t, 100)
  t.is(await store.add(peer(3), keys(150), 2_000_000), 100)
  t.is(await store.add(peer(3), keys(1), 2_000_000), 0)
  t.is(await store.add(peer(4), keys(50), 2_000_000), 50)
})

test('on real nodes: a member flooding ADD frames is cut at the bound, others are still recorded', async t => {
  const nodes = await startNetwork(t, 3, { providers: { maxRecordsPerPeer: 500 } })
  const [flooder, replica, honest] = nodes
  const stream = await flooder.host.dialProtocol(replica.host.peerId, PROTOCOL)
  const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_SIZE })
  const sent: Uint8Array[] = []
  let stored = 0
  for (let i = 0; i < 8; i++) {
    const batch = keys(256)
    sent.push(...batch)
    await lp.write(encodeMessage({ type: 'add', keys: packKeys(batch) }))
    const answer = decodeResponse(await lp.read({ signal: AbortSignal.timeout(10_000) }))
    t.is(answer.type, 'added')
    if (answer.type === 'added') stored += answer.count
  }
  await stream.close()
  t.is(stored, 500)
  const held = await replica.providers.store.get(sent)
  t.is(held.filter(list => list.length > 0).length, 500)

  // an honest member's records are still accepted on that replica
  const cids = Array.from({ length: 200 }, () => CID.createV1(0x55, Digest.create(sha256.code, randomBytes(32))))
  const result = await honest.providers.provide(cids)
  t.is(result.failedReplicas, 0)
  const me = honest.host.peerId.toMultihash().bytes
  const onReplica = await replica.providers.store.get(cids.map(c => recordKey(c.multihash.digest)))
  t.true(onReplica.every(list => list.some(p => Buffer.compare(p, me) === 0)))
})
