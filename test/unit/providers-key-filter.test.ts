import test from 'ava'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { RecordStore } from '../../protocols/providers/index.ts'
import { KeyFilter } from '../../protocols/providers/key-filter.ts'

const key = (n: number): Uint8Array => new Uint8Array(32).fill(n)
const peer = (n: number): Uint8Array => new Uint8Array(38).fill(n)

test('the filter never forgets a key and rarely claims one it never saw', t => {
  const filter = new KeyFilter(100_000)
  const keys = randomBytes(32 * 100_000)
  for (let i = 0; i < 100_000; i++) filter.add(keys, i * 32)
  let lost = 0
  for (let i = 0; i < 100_000; i++) if (!filter.has(keys, i * 32)) lost++
  t.is(lost, 0)
  const others = randomBytes(32 * 100_000)
  let positives = 0
  for (let i = 0; i < 100_000; i++) if (filter.has(others, i * 32)) positives++
  t.true(positives < 3000, `${positives} false positives in 100,000`)
  t.false(filter.full)
  const more = randomBytes(32 * filter.capacity)
  for (let i = 0; i < filter.capacity; i++) filter.add(more, i * 32)
  t.true(filter.full)
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
