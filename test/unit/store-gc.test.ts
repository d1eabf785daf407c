import test from 'ava'
import { readFile, readdir, stat, writeFile, open } from 'node:fs/promises'
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import { randomBytes } from 'node:crypto'
import { PAGE, page, seeded, tempRepo } from './store-helpers.ts'
import { PageMarks } from '../../store/gc.ts'

async function packFiles (dir: string): Promise<{ names: string[], bytes: number }> {
  const names = (await readdir(join(dir, 'packs'))).filter(f => f.endsWith('.pack')).sort()
  let bytes = 0
  for (const n of names) bytes += (await stat(join(dir, 'packs', n))).size
  return { names, bytes }
}

test('gc keeps referenced pages, frees the rest, and the pack files really shrink', async t => {
  const { repo, dir, tmp } = await tempRepo(t, { packSize: 256 * 1024 })
  const s = repo.store
  const a = seeded('a', PAGE * 200)
  const b = seeded('b', PAGE * 200)
  await writeFile(join(tmp, 'a'), a)
  await writeFile(join(tmp, 'b'), b)
  await s.importImage(join(tmp, 'a'), { name: 'a' })
  await s.importImage(join(tmp, 'b'), { name: 'b' })
  const before = await packFiles(dir)
  t.is(before.bytes, 400 * PAGE)
  t.is((await s.gc()).removedPages, 0)
  await s.remove('b')
  const removed: CID[] = []
  s.addEventListener('pages:removed', e => { removed.push(...(e as CustomEvent<CID[]>).detail) })
  const res = await s.gc()
  t.is(res.removedPages, 200)
  t.is(removed.length, 200)
  t.true(res.reclaimedBytes >= 200 * PAGE - 2 * 256 * 1024, `reclaimed ${res.reclaimedBytes}`)
  const after = await packFiles(dir)
  const stats = await s.stats()
  t.is(stats.distinctPages, 200)
  t.is(stats.storedBytes, 200 * PAGE)
  t.is(after.bytes, stats.packBytes)
  t.true(after.bytes <= 200 * PAGE + 256 * 1024, `packs hold ${after.bytes} bytes`)
  await s.exportImage('a', join(tmp, 'a.out'))
  t.true((await readFile(join(tmp, 'a.out'))).equals(a))
  t.true((await s.verify({ deep: true })).ok)
  // nothing left to do
  t.is((await s.gc()).removedPages, 0)
})

test('gc compacts a half-dead pack: live pages move to a new pack and the old file goes', async t => {
  const { repo, dir, tmp } = await tempRepo(t)
  const s = repo.store
  const parts: Buffer[] = []
  const onlyA: Buffer[] = []
  for (let i = 0; i < 100; i++) {
    parts.push(page(`a${i}`), page(`b${i}`))
    onlyA.push(page(`a${i}`))
  }
  await writeFile(join(tmp, 'ab'), Buffer.concat(parts))
  await writeFile(join(tmp, 'a'), Buffer.concat(onlyA))
  await s.importImage(join(tmp, 'ab'), { name: 'ab' })
  t.is((await s.importImage(join(tmp, 'a'), { name: 'a' })).newPages, 0)
  const before = await packFiles(dir)
  await s.remove('ab')
  const res = await s.gc()
  t.is(res.removedPages, 100)
  t.is(res.reclaimedBytes, 100 * PAGE)
  const after = await packFiles(dir)
  t.is(after.bytes, 100 * PAGE)
  t.notDeepEqual(after.names, before.names)
  await s.exportImage('a', join(tmp, 'a.out'))
  t.true((await readFile(join(tmp, 'a.out'))).equals(Buffer.concat(onlyA)))
  t.true((await s.verify({ deep: true })).ok)
  // appends after a gc go to a fresh pack and stay readable
  await writeFile(join(tmp, 'c'), seeded('c', PAGE * 10))
  await s.importImage(join(tmp, 'c'), { name: 'c' })
  t.true((await s.verify({ deep: true })).ok)
})

test('a gc running during an import never takes the import\'s pages', async t => {
  const { repo, tmp } = await tempRepo(t, { readChunk: 256 * 1024, commitBytes: 256 * 1024, readAhead: 1 })
  const s = repo.store
  const base = seeded('base', PAGE * 512)
  await writeFile(join(tmp, 'base'), base)
  await s.importImage(join(tmp, 'base'), { name: 'base' })
  // the new image reuses base's pages, which gc would free once base is removed
  const img = Buffer.concat([base, seeded('more', PAGE * 1024)])
  await writeFile(join(tmp, 'img'), img)
  await s.remove('base')
  let finished = false
  const importing = s.importImage(join(tmp, 'img'), { name: 'img' }).finally(() => { finished = true })
  let gcs = 0
  while (!finished) {
    await s.gc()
    gcs++
  }
  await importing
  t.true(gcs >= 1)
  await s.gc()
  await s.exportImage('img', join(tmp, 'img.out'))
  t.true((await readFile(join(tmp, 'img.out'))).equals(img))
  t.true((await s.verify({ deep: true })).ok)
})

test('a corrupted pack byte fails export naming the page; the rest stays readable', async t => {
  const { repo, dir, tmp } = await tempRepo(t)
  const s = repo.store
  const x = seeded('x', PAGE * 16)
  const y = seeded('y', PAGE * 16)
  await writeFile(join(tmp, 'x'), x)
  await writeFile(join(tmp, 'y'), y)
  await s.importImage(join(tmp, 'x'), { name: 'x' })
  await s.importImage(join(tmp, 'y'), { name: 'y' })
  let firstCid = ''
  for await (const slot of s.pageSlots(await s.resolve('x'))) {
    firstCid = slot.cid?.toString() ?? ''
    break
  }
  // x's first page is the first page of the first pack
  const fh = await open(join(dir, 'packs', '000001.pack'), 'r+')
  const b = Buffer.alloc(1)
  await fh.read(b, 0, 1, 100)
  b[0] ^= 0xff
  await fh.write(b, 0, 1, 100)
  await fh.close()
  const out = join(tmp, 'x.out')
  const err = await t.throwsAsync(s.exportImage('x', out), { code: 'ERR_PAGE_VERIFICATION' })
  t.true(err?.message.includes(firstCid), err?.message)
  t.true(err?.message.includes('image offset 0'), err?.message)
  await t.throwsAsync(stat(out))
  await t.throwsAsync(stat(`${out}.tmp`))
  await s.exportImage('y', join(tmp, 'y.out'))
  t.true((await readFile(join(tmp, 'y.out'))).equals(y))
  t.true((await s.verify()).ok)
  const deep = await s.verify({ deep: true })
  t.false(deep.ok)
  t.is(deep.problems.length, 1)
  t.true(deep.problems[0].includes(firstCid))
})

test('gc marks live pages in 8 bytes each, sorted: exact for marked digests, a shared prefix only keeps a page', t => {
  const marks = new PageMarks()
  const live: Buffer[] = []
  for (let i = 0; i < 100_000; i++) live.push(randomBytes(32))
  // every page marked several times, as pages shared by images are
  for (let r = 0; r < 3; r++) for (const d of live) marks.add(d)
  t.is(marks.size, live.length)
  t.true(marks.byteLength <= 16 * live.length, `${marks.byteLength} bytes for ${live.length} pages`)
  const dead: Buffer[] = []
  for (let i = 0; i < 50_000; i++) dead.push(randomBytes(32))
  // a dead digest sharing a live one's first 8 bytes may be kept, never the other way round
  const twin = Buffer.concat([live[0].subarray(0, 8), randomBytes(24)])
  const all = [...live.map(d => ({ d, live: true })), ...dead.map(d => ({ d, live: false })), { d: twin, live: false }]
  all.sort((a, b) => Buffer.compare(a.d, b.d))
  let wrong = 0
  for (const e of all) {
    const has = marks.hasInOrder(e.d)
    if (e.d === twin) t.true(has)
    else if (has !== e.live) wrong++
  }
  t.is(wrong, 0)
})

test('a page freed by gc and imported again is stored again', async t => {
  const { repo, tmp } = await tempRepo(t)
  const s = repo.store
  const a = seeded('again-a', PAGE * 30)
  await writeFile(join(tmp, 'a'), a)
  await s.importImage(join(tmp, 'a'), { name: 'a' })
  await s.remove('a')
  t.is((await s.gc()).removedPages, 30)
  t.is((await s.importImage(join(tmp, 'a'), { name: 'a' })).newPages, 30)
  await s.exportImage('a', join(tmp, 'a.out'))
  t.true((await readFile(join(tmp, 'a.out'))).equals(a))
  t.true((await s.verify({ deep: true })).ok)
})

for (const [label, pageTableMaxPages] of [['without the page table', 0], ['with a page table that outgrows its bound', 150]] as const) {
  test(`import, dedup, gc, compaction and export agree ${label}`, async t => {
    const { repo, tmp } = await tempRepo(t, { pageTableMaxPages, packSize: 64 * PAGE })
    const s = repo.store
    const a = seeded(`t-a-${label}`, PAGE * 120)
    const b = Buffer.concat([a.subarray(0, PAGE * 40), seeded(`t-b-${label}`, PAGE * 80)])
    await writeFile(join(tmp, 'a'), a)
    await writeFile(join(tmp, 'b'), b)
    t.is((await s.importImage(join(tmp, 'a'), { name: 'a' })).newPages, 120)
    t.is((await s.importImage(join(tmp, 'b'), { name: 'b' })).newPages, 80)
    await s.remove('a')
    t.is((await s.gc()).removedPages, 80)
    t.is((await s.importImage(join(tmp, 'a'), { name: 'a' })).newPages, 80)
    await s.remove('b')
    t.is((await s.gc()).removedPages, 80)
    t.is((await s.importImage(join(tmp, 'b'), { name: 'b' })).newPages, 80)
    for (const [name, bytes] of [['a', a], ['b', b]] as const) {
      await s.exportImage(name, join(tmp, `${name}.out`))
      t.true((await readFile(join(tmp, `${name}.out`))).equals(bytes))
    }
    t.true((await s.verify({ deep: true })).ok)
  })
}
