import test from 'ava'
import { createHash, randomBytes } from 'node:crypto'
import { PageTable } from '../../store/page-table.ts'

test('page table agrees with a Map through inserts, updates, deletes, growth and clear', t => {
  const table = new PageTable()
  const model = new Map<string, { pack: number, offset: number, length: number }>()
  const digests = randomBytes(40_000 * 32)
  const key = (i: number): string => digests.toString('hex', i * 32, i * 32 + 32)
  let seed = 7
  const rand = (n: number): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed % n }
  for (let step = 0; step < 200_000; step++) {
    const i = rand(40_000)
    const op = rand(10)
    if (op < 5) {
      const loc = { pack: rand(100), offset: rand(1 << 30) * 4096, length: 1 + rand(4096) }
      table.set(digests, i * 32, loc)
      model.set(key(i), loc)
    } else if (op < 8) {
      t.is(table.delete(digests, i * 32), model.delete(key(i)))
    } else if (step % 50_000 === 0) {
      table.clear()
      model.clear()
    } else {
      t.deepEqual(table.get(digests, i * 32), model.get(key(i)))
    }
  }
  t.is(table.size, model.size)
  let walked = 0
  table.forEach((b, at, pack, offset, length) => {
    walked++
    const m = model.get(Buffer.from(b.subarray(at, at + 32)).toString('hex'))
    t.deepEqual(m, { pack, offset, length })
  })
  t.is(walked, model.size)
})

test('a digest set (no locations) adds each digest once and gives its memory back on clear', t => {
  const set = new PageTable(0, { locations: false })
  const digests = randomBytes(100_000 * 32)
  for (let i = 0; i < 100_000; i++) t.true(set.add(digests, i * 32))
  for (let i = 0; i < 100_000; i += 7) t.false(set.add(digests, i * 32))
  t.is(set.size, 100_000)
  t.true(set.bytes <= 2 ** 18 * 33, `${set.bytes} bytes`)
  t.true(set.has(digests, 5 * 32))
  set.clear()
  t.is(set.size, 0)
  t.false(set.has(digests, 5 * 32))
  t.true(set.bytes <= 1024 * 33)
})

test('findPrefix finds a held digest by its first 8 bytes, and nothing for a prefix not held', t => {
  const table = new PageTable()
  const digests = Array.from({ length: 3000 }, (_, i) => createHash('sha256').update(`page ${i}`).digest())
  digests.forEach((d, i) => { table.set(d, 0, { pack: 1, offset: i * 4096, length: 4096 }) })
  const out = new Uint8Array(32)
  for (const d of digests.slice(0, 500)) {
    t.true(table.findPrefix(d, 0, out))
    t.deepEqual(Buffer.from(out), d)
  }
  const absent = createHash('sha256').update('not held').digest()
  t.false(table.findPrefix(absent, 0, out))
})
