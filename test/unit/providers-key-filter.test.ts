import test from 'ava'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { RecordStore, KEY_LENGTH } from '../../protocols/providers/index.ts'
import { KeyFilter, FILTER_BITS_PER_KEY } from '../../protocols/providers/key-filter.ts'

const key = (n: number): Uint8Array => new Uint8Array(KEY_LENGTH).fill(n)
const peer = (n: number): Uint8Array => new Uint8Array(38).fill(n)

test('the filter never forgets a key and rarely claims one it never saw', t => {
  const filter = new KeyFilter(100_000)
  const keys = randomBytes(KEY_LENGTH * 100_000)
  for (let i = 0; i < 100_000; i++) filter.add(keys, i * KEY_LENGTH)
  let lost = 0
  for (let i = 0; i < 100_000; i++) if (!filter.has(keys, i * KEY_LENGTH)) lost++
  t.is(lost, 0)
  const others = randomBytes(KEY_LENGTH * 100_000)
  let positives = 0
  for (let i = 0; i < 100_000; i++) if (filter.has(others, i * KEY_LENGTH)) positives++
  t.true(positives < 3000, `${positives} false positives in 100,000`)
  t.false(filter.full)
  const more = randomBytes(KEY_LENGTH * filter.capacity)
  for (let i = 0; i < filter.capacity; i++) filter.add(more, i * KEY_LENGTH)
  t.true(filter.full)
})

test('salted: a key added under one peer number is found under it, and rarely under another', t => {
  const filter = new KeyFilter(100_000)
  const keys = randomBytes(KEY_LENGTH * 20_000)
  // the same keys under 5 salts: 100,000 pairs, capacity reached
  for (let salt = 0; salt < 5; salt++) for (let i = 0; i < 20_000; i++) filter.add(keys, i * KEY_LENGTH, salt)
  let lost = 0
  for (let salt = 0; salt < 5; salt++) for (let i = 0; i < 20_000; i++) if (!filter.has(keys, i * KEY_LENGTH, salt)) lost++
  t.is(lost, 0)
  // the same keys under other salts (peers that never provided them)
  let positives = 0
  for (let salt = 5; salt < 10; salt++) for (let i = 0; i < 20_000; i++) if (filter.has(keys, i * KEY_LENGTH, salt)) positives++
  t.true(positives < 3000, `${positives} false positives in 100,000`)
})

test('filled to capacity, 16-byte keys (4 words + 3 double-hashed probes) give the ~1% false positives of 10 bits per key', t => {
  const filter = new KeyFilter(1)
  t.is(filter.capacity, Math.floor(2 ** 23 / FILTER_BITS_PER_KEY))
  const keys = randomBytes(KEY_LENGTH * filter.capacity)
  for (let i = 0; i < filter.capacity; i++) filter.add(keys, i * KEY_LENGTH)
  const n = 200_000
  const others = randomBytes(KEY_LENGTH * n)
  let positives = 0
  for (let i = 0; i < n; i++) if (filter.has(others, i * KEY_LENGTH)) positives++
  // 7 independent probes at 10 bits per key: 0.82%
  t.true(positives / n < 0.0125, `${(positives / n * 100).toFixed(2)}% false positives`)
})

test('with the filter loaded, records written before and after the load merge providers and answer like before', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-records-'))
  let db = new ClassicLevel(dir)
  await db.open()
  t.teardown(async () => { await db.close(); await rm(dir, { recursive: true, force: true }) })
  const first = new RecordStore({ db })
  await first.add(peer(1), [key(1), key(2)], Date.now() + 60_000)
  await db.close()

  // a restarted replica: the filter comes from the keys on disk
  db = new ClassicLevel(dir)
  await db.open()
  const store = new RecordStore({ db })
  await store.load()
  // key 1 was written before the load: a second provider must be merged, not overwrite it
  await store.add(peer(2), [key(1), key(3)], Date.now() + 60_000)
  await store.add(peer(3), [key(3)], Date.now() + 60_000)
  const got = await store.get([key(1), key(2), key(3), key(4)])
  t.deepEqual(got.map(list => list.map(p => p[0]).sort()), [[1, 2], [1], [2, 3], []])
  // adds racing a reload are not lost either
  const reload = store.load()
  await store.add(peer(4), [key(4)], Date.now() + 60_000)
  await reload
  await store.add(peer(5), [key(4)], Date.now() + 60_000)
  t.deepEqual((await store.get([key(4)]))[0].map(p => p[0]).sort(), [4, 5])
  t.is(await store.size(), 4)
})
