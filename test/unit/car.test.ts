import test from 'ava'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CarReader } from '@ipld/car'
import * as raw from 'multiformats/codecs/raw'
import { exportCar, importCar } from '../../store/car.ts'
import { DAG_CBOR_CODE } from '../../store/manifest.ts'
import { verifyBlock } from '../../store/page.ts'
import { PAGE, page, seeded, tempRepo } from './store-helpers.ts'

/** An image with repeated pages, a run of zero pages and a short last page. */
function imageBytes (): Buffer {
  const parts: Buffer[] = []
  for (let i = 0; i < 300; i++) parts.push(page(`p${i % 200}`))
  parts.push(Buffer.alloc(64 * PAGE))
  for (let i = 0; i < 40; i++) parts.push(page(`q${i}`))
  parts.push(seeded('tail', 1234))
  return Buffer.concat(parts)
}

test('export --car then import --car into another repo gives a byte-identical image', async t => {
  const a = await tempRepo(t)
  const b = await tempRepo(t)
  const file = join(a.tmp, 'vm.ram')
  const bytes = imageBytes()
  await writeFile(file, bytes)
  const imported = await a.repo.store.importImage(file, { name: 'vm1' })
  const car = join(a.tmp, 'vm1.car')
  const progress: number[] = []
  const exported = await exportCar(a.repo.store, 'vm1', car, { onProgress: e => { progress.push(e.done) } })
  t.true(exported.root.equals(imported.root))
  t.is(exported.pages, 241, 'distinct non-zero pages, once each')
  t.is(progress[progress.length - 1], bytes.length)

  // readable by a stock CAR reader: one root, every block hashes to its CID, no zero page
  const reader = await CarReader.fromBytes(await readFile(car))
  const roots = await reader.getRoots()
  t.is(roots.length, 1)
  t.true(roots[0].equals(imported.root))
  let rawBlocks = 0
  let cborBlocks = 0
  for await (const block of reader.blocks()) {
    t.true(verifyBlock(block.cid, block.bytes), `block ${block.cid.toString()} verifies`)
    if (block.cid.code === raw.code) {
      rawBlocks++
      t.false(block.bytes.every(x => x === 0), 'zero pages are implicit')
    } else {
      t.is(block.cid.code, DAG_CBOR_CODE)
      cborBlocks++
    }
  }
  t.is(rawBlocks, exported.pages)
  t.is(cborBlocks, exported.blocks)
  t.true(await reader.has(imported.root))

  const back = await importCar(b.repo.store, car, { name: 'copy' })
  t.true(back.root.equals(imported.root))
  t.is(back.newPages, 241)
  t.is(back.size, bytes.length)
  const info = await b.repo.store.inspect('copy')
  t.true(info.complete)
  const out = join(b.tmp, 'out.ram')
  await b.repo.store.exportImage('copy', out)
  t.deepEqual(await readFile(out), bytes)

  // importing again stores nothing new
  const again = await importCar(b.repo.store, car)
  t.is(again.newPages, 0)
})

test('a CAR with a corrupted block is rejected and nothing is stored', async t => {
  const a = await tempRepo(t)
  const b = await tempRepo(t)
  const file = join(a.tmp, 'vm.ram')
  await writeFile(file, imageBytes())
  await a.repo.store.importImage(file, { name: 'vm1' })
  const car = join(a.tmp, 'vm1.car')
  await exportCar(a.repo.store, 'vm1', car)

  const corrupted = join(a.tmp, 'bad.car')
  const bytes = await readFile(car)
  // the last block is a page: flip a byte of its content
  bytes[bytes.length - 10] ^= 0xff
  await writeFile(corrupted, bytes)
  const before = await b.repo.store.stats()
  const err = await t.throwsAsync(importCar(b.repo.store, corrupted, { name: 'bad' }))
  t.is((err as any).code, 'ERR_CAR_BLOCK_VERIFICATION')
  t.regex(err!.message, /does not match its CID/)
  t.deepEqual(await b.repo.store.stats(), before)
  t.deepEqual(await b.repo.store.list(), [])
})

test('a CAR lacking pages of its image, or not a CAR at all, is refused', async t => {
  const a = await tempRepo(t)
  const b = await tempRepo(t)
  const file = join(a.tmp, 'vm.ram')
  await writeFile(file, imageBytes())
  const { root } = await a.repo.store.importImage(file, { name: 'vm1' })

  // manifest blocks only: a valid CAR, but not a complete image
  const { CarWriter } = await import('@ipld/car')
  const manifest = await a.repo.store.readManifest(root)
  const { writer, out } = CarWriter.create([root])
  const chunks: Uint8Array[] = []
  const collect = (async () => { for await (const c of out) chunks.push(c) })()
  for (const cid of [root, ...manifest.chunks]) await writer.put({ cid, bytes: (await a.repo.store.getBlock(cid))! })
  await writer.close()
  await collect
  const partial = join(a.tmp, 'partial.car')
  await writeFile(partial, Buffer.concat(chunks))
  const err = await t.throwsAsync(importCar(b.repo.store, partial))
  t.is((err as any).code, 'ERR_CAR_FORMAT')
  t.regex(err!.message, /lacks page/)
  t.deepEqual(await b.repo.store.list(), [])

  const junk = join(a.tmp, 'junk.car')
  await writeFile(junk, 'not a car file at all')
  t.is((await t.throwsAsync(importCar(b.repo.store, junk)) as any).code, 'ERR_CAR_FORMAT')
  t.is((await t.throwsAsync(importCar(b.repo.store, join(a.tmp, 'missing.car'))) as any).code, 'ERR_INPUT_FILE')
})
