import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { RecordStore, KEY_LENGTH, DIGEST_LENGTH } from '../../protocols/providers/index.ts'

async function open (t: any, init: { maxProvidersPerKey?: number } = {}): Promise<{ store: RecordStore, clock: { now: number }, db: ClassicLevel }> {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-records-'))
  const db = new ClassicLevel(dir)
  await db.open()
  t.teardown(async () => { await db.close(); await rm(dir, { recursive: true, force: true }) })
  const clock = { now: 1_000_000 }
  return { store: new RecordStore({ db, now: () => clock.now, ...init }), clock, db }
}

const key = (n: number): Uint8Array => new Uint8Array(KEY_LENGTH).fill(n)
const peer = (n: number): Uint8Array => new Uint8Array(38).fill(n)

test('records added in one batch are returned per key', async t => {
  const { store } = await open(t)
  t.is(await store.add(peer(1), [key(1), key(2)], 2_000_000, [new Uint8Array([1, 2, 3])]), 2)
  await store.add(peer(2), [key(2)], 2_000_000)
  const got = await store.get([key(1), key(2), key(3)])
  t.deepEqual(got.map(list => list.map(p => p[0]).sort()), [[1], [1, 2], []])
  t.deepEqual((await store.getAddrs([peer(1), peer(2)])).map(a => a.length), [1, 0])
  t.is(await store.size(), 2)
})

test('a provider re-adding a key refreshes it instead of duplicating', async t => {
  const { store, clock } = await open(t)
  await store.add(peer(1), [key(1)], 1_500_000)
  await store.add(peer(1), [key(1)], 3_000_000)
  clock.now = 2_000_000
  t.deepEqual((await store.get([key(1)]))[0].length, 1)
})

test('expired records are not returned and are swept', async t => {
  const { store, clock } = await open(t)
  await store.add(peer(1), [key(1), key(2)], 1_100_000, [new Uint8Array([1])])
  await store.add(peer(2), [key(2)], 1_300_000)
  clock.now = 1_200_000
  t.deepEqual((await store.get([key(1), key(2)])).map(l => l.map(p => p[0])), [[], [2]])
  t.deepEqual(await store.getAddrs([peer(1)]), [[]])
  t.is(await store.sweep(), 2) // key 1 deleted, key 2 trimmed
  t.is(await store.size(), 1)
  clock.now = 1_400_000
  t.is(await store.sweep(), 1)
  t.is(await store.size(), 0)
})

test('providers per key are capped, the soonest to expire dropped first', async t => {
  const { store } = await open(t, { maxProvidersPerKey: 3 })
  for (let i = 1; i <= 5; i++) await store.add(peer(i), [key(9)], 2_000_000 + i)
  t.deepEqual((await store.get([key(9)]))[0].map(p => p[0]).sort(), [3, 4, 5])
})

test('concurrent adds of the same key from different providers keep both', async t => {
  const { store } = await open(t)
  await Promise.all([1, 2, 3, 4].map(async i => store.add(peer(i), [key(5)], 2_000_000)))
  t.is((await store.get([key(5)]))[0].length, 4)
})

test('keys are 16 bytes: a key of another width is refused, not truncated', async t => {
  const { store } = await open(t)
  await t.throwsAsync(store.add(peer(1), [new Uint8Array(DIGEST_LENGTH)], 2_000_000), { instanceOf: RangeError })
  await t.throwsAsync(store.get([key(1), new Uint8Array(KEY_LENGTH - 1)]), { instanceOf: RangeError })
  t.is(await store.size(), 0)
})

test('records of earlier versions (peer ids in the values, or 32-byte keys) are deleted by load; current ones stay', async t => {
  const { store, db } = await open(t)
  await store.add(peer(1), [key(1)], 2_000_000)
  // what an earlier replica left: sublevel r, `[u8 len][peer id][f64 expiry]` values
  const old = db.sublevel<Buffer, Buffer>('r', { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  const value = Buffer.concat([Buffer.from([38]), Buffer.from(peer(2)), Buffer.alloc(8)])
  value.writeDoubleBE(2_000_000, 39)
  await old.batch([Buffer.from(key(2)), Buffer.alloc(DIGEST_LENGTH, 3)].map(k => ({ type: 'put' as const, key: k, value })))
  await store.load()
  t.deepEqual(await old.keys().all(), [])
  t.is(await store.size(), 1)
  t.deepEqual((await store.get([key(1), key(2)])).map(l => l.map(p => p[0])), [[1], []])
})

test('an entry is 12 bytes: a peer number and an expiry; numbers survive a reopen', async t => {
  const { store, db } = await open(t)
  await store.add(peer(7), [key(1)], 2_000_000)
  await store.add(peer(8), [key(1), key(2)], 2_000_000)
  const records = db.sublevel<Buffer, Buffer>('q', { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  t.is((await records.get(Buffer.from(key(1))))?.byteLength, 24)
  t.is((await records.get(Buffer.from(key(2))))?.byteLength, 12)
  const again = new RecordStore({ db, now: () => 1_000_000 })
  await again.add(peer(9), [key(2)], 2_000_000)
  t.deepEqual((await again.get([key(1), key(2)])).map(l => l.map(p => p[0]).sort()), [[7, 8], [8, 9]])
})
