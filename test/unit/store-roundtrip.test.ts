import test from 'ava'
import { existsSync } from 'node:fs'
import { open, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { PAGE, buildElfCore, page, seeded, tempRepo } from './store-helpers.ts'
import { pageCid } from '../../store/page.ts'

/** 40 pages: random, zero runs, duplicates, and an odd tail. */
function mixedImage (): Buffer {
  const parts: Buffer[] = []
  for (let i = 0; i < 10; i++) parts.push(page(`a${i}`))
  parts.push(Buffer.alloc(PAGE * 8))
  for (let i = 0; i < 10; i++) parts.push(page(`a${i % 3}`)) // duplicates
  parts.push(Buffer.alloc(PAGE * 11))
  parts.push(page('tail').subarray(0, 1234)) // odd size
  return Buffer.concat(parts)
}

test('raw round trip with zero pages, duplicates and an odd size is byte-identical and sparse', async t => {
  const { repo, tmp } = await tempRepo(t)
  const img = mixedImage()
  const file = join(tmp, 'vm1.ram')
  await writeFile(file, img)
  const progress: number[] = []
  const added: CID[] = []
  repo.store.addEventListener('pages:added', (e) => { added.push(...(e as CustomEvent<CID[]>).detail) })
  const res = await repo.store.importImage(file, { name: 'vm1', onProgress: p => progress.push(p.done) })
  t.is(res.format, 'raw')
  t.is(res.size, img.length)
  t.is(res.pages, 40)
  t.is(res.zeroPages, 19)
  t.is(res.newPages, 11) // 10 distinct random + the tail
  t.is(added.length, 11)
  t.is(progress.at(-1), img.length)

  const out = join(tmp, 'out.ram')
  await repo.store.exportImage('vm1', out)
  t.true((await readFile(out)).equals(img))
  await t.throwsAsync(stat(`${out}.tmp`))

  const m = await repo.store.readManifest(res.root)
  t.deepEqual(m.extents, [{ offset: 0, length: img.length }])
  const slots = []
  for await (const s of repo.store.pageSlots(res.root)) slots.push(s)
  t.is(slots.length, 40)
  t.is(slots[10].cid, null)
  t.true(slots[0].cid?.equals(pageCid(page('a0'))))
  t.is(slots[39].length, 1234)
  t.is(slots[39].offset, 39 * PAGE)
})

test('export writes zero pages as holes', async t => {
  const { repo, tmp } = await tempRepo(t)
  // 64 MiB, almost all zero: allocated blocks must stay far below the size
  const img = Buffer.alloc(64 * 1024 * 1024)
  page('x').copy(img, 0)
  page('y').copy(img, img.length - PAGE)
  const file = join(tmp, 'sparse.ram')
  await writeFile(file, img)
  const { root, zeroPages } = await repo.store.importImage(file)
  t.is(zeroPages, img.length / PAGE - 2)
  const out = join(tmp, 'sparse.out')
  await repo.store.exportImage(root, out)
  const st = await stat(out)
  t.is(st.size, img.length)
  t.true(st.blocks * 512 < 1024 * 1024, `allocated ${st.blocks * 512} bytes`)
  t.true((await readFile(out)).equals(img))
})

test('dedup between two images: the second stores only its new pages', async t => {
  const { repo, tmp } = await tempRepo(t)
  const a = seeded('base', PAGE * 200)
  const b = Buffer.from(a)
  page('new1').copy(b, PAGE * 5)
  page('new2').copy(b, PAGE * 150)
  await writeFile(join(tmp, 'a'), a)
  await writeFile(join(tmp, 'b'), b)
  const ra = await repo.store.importImage(join(tmp, 'a'), { name: 'a' })
  const rb = await repo.store.importImage(join(tmp, 'b'), { name: 'b' })
  t.is(ra.newPages, 200)
  t.is(rb.newPages, 2)
  await repo.store.exportImage('b', join(tmp, 'b.out'))
  t.true((await readFile(join(tmp, 'b.out'))).equals(b))
  const stats = await repo.store.stats()
  t.is(stats.images, 2)
  t.is(stats.logicalBytes, a.length + b.length)
  t.is(stats.distinctPages, 202)
  t.is(stats.storedBytes, 202 * PAGE)
  t.is(stats.zeroPages, 0)
  t.true(Math.abs(stats.dedupRatio - (400 / 202)) < 1e-9)
  t.true(stats.packBytes >= stats.storedBytes)
})

test('ELF core with unaligned PT_LOAD segments round trips and dedups against another core', async t => {
  const { repo, tmp } = await tempRepo(t)
  const seg1 = Buffer.concat([seeded('s1', PAGE * 30), Buffer.alloc(PAGE * 4), seeded('s1b', 777)])
  const seg2 = seeded('s2', PAGE * 20)
  const core1 = buildElfCore([{ offset: 0x1234, data: seg1 }, { offset: 0x1234 + seg1.length + 333, data: seg2 }])
  // the same memory at other unaligned offsets, with a different note
  const core2 = buildElfCore([{ offset: 0x2f01, data: seg1 }, { offset: 0x2f01 + seg1.length + 5, data: seg2 }], Buffer.from('CORE\0another process'))
  await writeFile(join(tmp, 'c1'), core1)
  await writeFile(join(tmp, 'c2'), core2)
  const r1 = await repo.store.importImage(join(tmp, 'c1'), { name: 'c1' })
  t.is(r1.format, 'elf')
  const m = await repo.store.readManifest(r1.root)
  t.is(m.format, 'elf')
  t.true(m.extents.some(e => e.offset === 0x1234 && e.length === seg1.length))
  t.is(m.extents.reduce((a, e) => a + e.length, 0), core1.length)
  const r2 = await repo.store.importImage(join(tmp, 'c2'), { name: 'c2' })
  // only the header/note/gap extents are new; segment pages are shared
  t.true(r2.newPages <= 4, `newPages ${r2.newPages}`)
  t.true(r1.zeroPages >= 4)
  for (const [name, bytes] of [['c1', core1], ['c2', core2]] as const) {
    const out = join(tmp, `${name}.out`)
    await repo.store.exportImage(name, out)
    t.true((await readFile(out)).equals(bytes), `${name} differs`)
  }
})

test('manifest chunks are shared between images with a shifted identical run', async t => {
  const { repo, tmp } = await tempRepo(t, { chunkMin: 4, chunkModulus: 16, chunkMax: 256 })
  const run = seeded('run', PAGE * 600)
  const a = Buffer.concat([seeded('pa', PAGE * 7), run, seeded('sa', PAGE * 3)])
  const b = Buffer.concat([seeded('pb', PAGE * 19), run])
  await writeFile(join(tmp, 'a'), a)
  await writeFile(join(tmp, 'b'), b)
  const ra = await repo.store.importImage(join(tmp, 'a'))
  const rb = await repo.store.importImage(join(tmp, 'b'))
  const ma = await repo.store.readManifest(ra.root)
  const mb = await repo.store.readManifest(rb.root)
  t.true(ma.chunks.length > 10)
  const sa = new Set(ma.chunks.map(c => c.toString()))
  const shared = mb.chunks.filter(c => sa.has(c.toString())).length
  t.true(shared >= mb.chunks.length - 3, `shared ${shared} of ${mb.chunks.length}`)
  // chunk blocks are plain dag-cbor: page links are CIDs an IPFS tool can walk
  const bytes = await repo.store.getBlock(mb.chunks[1])
  const decoded = dagCbor.decode(bytes as Uint8Array) as unknown[]
  t.true(decoded.some(e => CID.asCID(e) != null))
  t.true(await repo.store.hasBlock(mb.root))
})

test('page store: has, get, getMany, putMany, allPages and the zero page', async t => {
  const { repo } = await tempRepo(t)
  const s = repo.store
  const p1 = page('p1')
  const p2 = page('p2')
  const zero = Buffer.alloc(PAGE)
  const c1 = pageCid(p1)
  const c2 = pageCid(p2)
  const cz = pageCid(zero)
  t.deepEqual(await s.has([c1, cz]), [false, true])
  t.is(await s.putMany([{ cid: c1, bytes: p1 }, { cid: cz, bytes: zero }, { cid: c1, bytes: p1 }]), 1)
  t.is(await s.putMany([{ cid: c1, bytes: p1 }, { cid: c2, bytes: p2 }]), 1)
  t.deepEqual(await s.has([c1, c2, cz]), [true, true, true])
  t.true(Buffer.from(await s.get(c1) as Uint8Array).equals(p1))
  t.true(Buffer.from(await s.get(cz) as Uint8Array).equals(zero))
  t.is(await s.get(pageCid(page('absent'))), undefined)
  const got = []
  for await (const g of s.getMany([c2, pageCid(page('absent')), c1])) got.push(g.bytes == null ? null : Buffer.from(g.bytes))
  t.true(got[0]?.equals(p2))
  t.is(got[1], null)
  t.true(got[2]?.equals(p1))
  await t.throwsAsync(s.putMany([{ cid: c1, bytes: p2 }]), { code: 'ERR_PAGE_VERIFICATION' })
  // a CID that cannot name a page is refused even when the caller says it verified the bytes
  await t.throwsAsync(s.putMany([{ cid: CID.parse('bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'), bytes: p1 }], { verified: true }), { code: 'ERR_PAGE_VERIFICATION' })
  const all = []
  for await (const batch of s.allPages({ batchSize: 1 })) all.push(...batch.map(c => c.toString()))
  t.deepEqual(all.sort(), [c1.toString(), c2.toString()].sort())
})

test('export makes the file durable before it appears under its name', async t => {
  const { repo, tmp } = await tempRepo(t)
  const img = mixedImage()
  await writeFile(join(tmp, 'in'), img)
  await repo.store.importImage(join(tmp, 'in'), { name: 'm' })
  const out = join(tmp, 'out')
  // watch every datasync of this process: which file (inode) and whether `out` existed yet
  const probe = await open(join(tmp, 'in'), 'r')
  const proto = Object.getPrototypeOf(probe)
  await probe.close()
  const original = proto.datasync
  const syncs: Array<{ ino: number, outExisted: boolean }> = []
  proto.datasync = async function (this: any) {
    const outExisted = existsSync(out)
    await original.call(this)
    syncs.push({ ino: (await this.stat()).ino, outExisted })
  }
  t.teardown(() => { proto.datasync = original })
  await repo.store.exportImage('m', out)
  proto.datasync = original
  t.true((await readFile(out)).equals(img))
  const { ino } = await stat(out)
  t.true(syncs.some(s => s.ino === ino && !s.outExisted), JSON.stringify(syncs))
})

test('putMany with verified: true stores pages without hashing them again; reads still verify', async t => {
  const { repo } = await tempRepo(t)
  const s = repo.store
  const pages = Array.from({ length: 50 }, (_, i) => page(`v${i}`))
  const cids = pages.map(p => pageCid(p))
  t.is(await s.putMany(pages.map((bytes, i) => ({ cid: cids[i], bytes })), { verified: true }), 50)
  t.deepEqual(await s.has(cids), pages.map(() => true))
  for await (const g of s.getMany(cids)) t.true(Buffer.from(g.bytes as Uint8Array).equals(pages[cids.indexOf(g.cid)]))
  // the option really skips the hash: bytes that do not match are taken (only a caller that
  // checked them may say so), and the read path, which always verifies, names the page
  const liar = page('claimed')
  const claimed = pageCid(liar)
  t.is(await s.putMany([{ cid: claimed, bytes: page('actual') }], { verified: true }), 1)
  const err = await t.throwsAsync(s.get(claimed), { code: 'ERR_PAGE_VERIFICATION' })
  t.true(err?.message.includes(claimed.toString()))
  await t.throwsAsync(s.putMany([{ cid: pageCid(page('other')), bytes: liar }]), { code: 'ERR_PAGE_VERIFICATION' })
})

for (const exportWorkers of [false, true]) {
test(`export with exportWorkers: ${exportWorkers} is byte-identical and runs its batches ${exportWorkers ? 'on the hash workers' : 'on the calling thread'}`, async t => {
  const { repo, tmp } = await tempRepo(t, { exportWorkers, hashWorkers: 2 })
  // more than one inline batch, with zero runs, repeats and an odd tail
  const parts: Buffer[] = []
  for (let i = 0; i < 1500; i++) parts.push(i % 7 === 0 ? Buffer.alloc(PAGE) : page(`p${i % 1100}`))
  parts.push(seeded('tail', 777))
  const img = Buffer.concat(parts)
  const file = join(tmp, 'vm.ram')
  await writeFile(file, img)
  const { root } = await repo.store.importImage(file, { name: 'vm' })
  const hasher = (repo.store as any).hasher
  const submit = hasher.submit.bind(hasher)
  let jobs = 0
  hasher.submit = async (msg: { type: string }) => {
    if (msg.type === 'export') jobs++
    return submit(msg)
  }
  const out = join(tmp, 'out.ram')
  await repo.store.exportImage(root, out)
  t.true((await readFile(out)).equals(img))
  if (exportWorkers) t.true(jobs > 0)
  else t.is(jobs, 0)
})
}
