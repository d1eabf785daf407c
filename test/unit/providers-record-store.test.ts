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

test('load converts the previous layout (lists in q) to entries and deletes the one before (r)', async t => {
  const { store, db, clock } = await open(t)
  await store.add(peer(1), [key(1)], 2_000_000) // peer 1 is number 0
  await store.add(peer(2), [key(4)], 2_000_000) // peer 2 is number 1
  // sublevel r: `[u8 len][peer id][f64 expiry]` values, also under 32-byte keys
  const r = db.sublevel<Buffer, Buffer>('r', { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  const value = Buffer.concat([Buffer.from([38]), Buffer.from(peer(2)), Buffer.alloc(8)])
  value.writeDoubleBE(2_000_000, 39)
  await r.batch([Buffer.from(key(2)), Buffer.alloc(DIGEST_LENGTH, 3)].map(k => ({ type: 'put' as const, key: k, value })))
  // sublevel q: `[u32 peer number][f64 expiry]` lists under 16-byte keys (32-byte ones in 1.0.0)
  const list = (...entries: Array<[number, number]>): Buffer => {
    const b = Buffer.alloc(12 * entries.length)
    entries.forEach(([n, expires], i) => { b.writeUInt32BE(n, i * 12); b.writeDoubleBE(expires, i * 12 + 4) })
    return b
  }
  const q = db.sublevel<Buffer, Buffer>('q', { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await q.batch([
    { type: 'put', key: Buffer.from(key(3)), value: list([0, 3_000_000], [1, 1_500_000]) },
    // an older expiry than the entry an ADD wrote since: the entry keeps the later one
    { type: 'put', key: Buffer.from(key(1)), value: list([0, 1_200_000]) },
    { type: 'put', key: Buffer.alloc(DIGEST_LENGTH, 5), value: list([0, 3_000_000]) }
  ])
  await store.load()
  t.deepEqual(await r.keys().all(), [])
  t.deepEqual(await q.keys().all(), [])
  const providers = async (): Promise<number[][]> => (await store.get([key(1), key(2), key(3), key(4)])).map(l => l.map(p => p[0]).sort())
  t.deepEqual(await providers(), [[1], [], [1, 2], [2]])
  clock.now = 1_600_000
  t.deepEqual(await providers(), [[1], [], [1], [2]])
  t.is(await store.size(), 3)
})

test('an entry is a (key, peer number) level key and an 8-byte expiry; numbers survive a reopen', async t => {
  const { store, db } = await open(t)
  await store.add(peer(7), [key(1)], 2_000_000)
  await store.add(peer(8), [key(1), key(2)], 2_000_000)
  const entries = await db.sublevel<Buffer, Buffer>('e', { keyEncoding: 'buffer', valueEncoding: 'buffer' }).iterator().all()
  t.deepEqual(entries.map(([k, v]) => [k.byteLength, v.byteLength]), [[20, 8], [20, 8], [20, 8]])
  const again = new RecordStore({ db, now: () => 1_000_000 })
  await again.add(peer(9), [key(2)], 2_000_000)
  t.deepEqual((await again.get([key(1), key(2)])).map(l => l.map(p => p[0]).sort()), [[7, 8], [8, 9]])
})

test('an ADD of keys another peer provides is a blind write: no read of the store', async t => {
  const { store, db } = await open(t)
  await store.load()
  const keys = Array.from({ length: 200 }, (_, i) => key(i))
  await store.add(peer(1), keys, 2_000_000)
  const reads = { getMany: 0, get: 0 }
  const getMany = db.getMany.bind(db)
  const get = db.get.bind(db)
  ;(db as any).getMany = async (...args: any[]) => { reads.getMany++; return getMany(...(args as [any])) }
  ;(db as any).get = async (...args: any[]) => { reads.get++; return get(...(args as [any])) }
  await store.add(peer(2), keys, 2_500_000)
  t.deepEqual(reads, { getMany: 0, get: 0 })
  const got = await store.get(keys)
  t.is(reads.getMany, 1)
  t.true(got.every(list => list.length === 2))
})

test('after load, GET finds every pair through the filter, and none that was never added', async t => {
  const { store, db } = await open(t)
  for (let p = 1; p <= 6; p++) await store.add(peer(p), Array.from({ length: 40 }, (_, i) => key((i * 7 + p) % 251)), 2_000_000)
  const before = await store.get(Array.from({ length: 251 }, (_, i) => key(i)))
  await store.load()
  const again = new RecordStore({ db, now: () => 1_000_000 })
  await again.load()
  const keys = Array.from({ length: 251 }, (_, i) => key(i))
  const sorted = (lists: Uint8Array[][]): number[][] => lists.map(l => l.map(p => p[0]).sort((a, b) => a - b))
  t.deepEqual(sorted(await store.get(keys)), sorted(before))
  t.deepEqual(sorted(await again.get(keys)), sorted(before))
  t.is(sorted(before).flat().length, 240)
})

test('the sweep trims keys above the cap, the soonest to expire first', async t => {
  const { store, db } = await open(t, { maxProvidersPerKey: 2 })
  for (let i = 1; i <= 4; i++) await store.add(peer(i), [key(9), key(10 + i)], 2_000_000 + i)
  t.is(await store.sweep(), 2)
  const entries = await db.sublevel<Buffer, Buffer>('e', { keyEncoding: 'buffer', valueEncoding: 'buffer' }).keys().all()
  t.is(entries.length, 6)
  t.deepEqual((await store.get([key(9)]))[0].map(p => p[0]).sort(), [3, 4])
  t.is(await store.size(), 5)
})
