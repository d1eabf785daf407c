import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { deflateSync } from 'node:zlib'
import test from 'ava'
import {
  PAGE_SIZE,
  evolveImage,
  generateTemplate,
  templatePagesHeld,
  writeImage
} from '../../testnet/synthetic.ts'
import type { ExecutionContext } from 'ava'

const MiB = 1024 * 1024

async function tempDir (t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-synthetic-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE)

/** sha256 of every page, and whether it is zero */
async function pageHashes (path: string): Promise<Array<{ hash: string, zero: boolean }>> {
  const data = await readFile(path)
  const out = []
  for (let p = 0; p < data.length; p += PAGE_SIZE) {
    const page = data.subarray(p, p + PAGE_SIZE)
    out.push({ hash: createHash('sha256').update(page).digest('hex'), zero: page.equals(ZERO_PAGE) })
  }
  return out
}

const fileHash = async (path: string): Promise<string> => createHash('sha256').update(await readFile(path)).digest('hex')

test('the same seed gives the same image, another seed another', async t => {
  const dir = await tempDir(t)
  const options = { sizeBytes: 8 * MiB, seed: 42, template: { seed: 7, pages: 512 }, chunkBytes: 1 * MiB }
  const a = await writeImage(join(dir, 'a'), options)
  const b = await writeImage(join(dir, 'b'), { ...options, chunkBytes: 3 * MiB }) // chunking does not matter
  await writeImage(join(dir, 'c'), { ...options, seed: 43 })
  t.deepEqual(a, b)
  t.is(await fileHash(join(dir, 'a')), await fileHash(join(dir, 'b')))
  t.not(await fileHash(join(dir, 'a')), await fileHash(join(dir, 'c')))
})

test('zero, duplicate and unique pages come in the requested fractions', async t => {
  const dir = await tempDir(t)
  const path = join(dir, 'vm')
  const summary = await writeImage(path, { sizeBytes: 32 * MiB, seed: 1, zeroFraction: 0.3, duplicateFraction: 0.1 })
  const pages = await pageHashes(path)
  t.is(pages.length, 8192)
  t.is(summary.pages, 8192)
  const zero = pages.filter(p => p.zero).length
  t.is(zero, summary.zeroPages)
  t.true(Math.abs(zero / pages.length - 0.3) < 0.03, `zero fraction ${zero / pages.length}`)
  const nonZero = pages.filter(p => !p.zero)
  const distinct = new Set(nonZero.map(p => p.hash)).size
  // every duplicate repeats a unique page; unique pages are all distinct
  t.is(distinct, summary.uniquePages)
  t.is(nonZero.length - distinct, summary.duplicatePages)
  t.true(Math.abs(summary.duplicatePages / pages.length - 0.1) < 0.02, `duplicate fraction ${summary.duplicatePages / pages.length}`)
})

test('two VMs of one template share fraction × template pages, at different offsets', async t => {
  const dir = await tempDir(t)
  const template = { seed: 9, pages: 2048, fraction: 0.5 }
  const a = await writeImage(join(dir, 'a'), { sizeBytes: 16 * MiB, seed: 1, template })
  const b = await writeImage(join(dir, 'b'), { sizeBytes: 24 * MiB, seed: 2, template })
  t.not(a.templateOffsetPages, b.templateOffsetPages)
  t.is(a.templatePages, b.templatePages)
  t.true(Math.abs(a.templatePages - 1024) < 1024 * 0.1, `template pages ${a.templatePages}`)
  t.is(templatePagesHeld(template).length, a.templatePages)

  const pagesA = await pageHashes(join(dir, 'a'))
  const pagesB = await pageHashes(join(dir, 'b'))
  const setB = new Set(pagesB.filter(p => !p.zero).map(p => p.hash))
  const shared = new Set(pagesA.filter(p => !p.zero && setB.has(p.hash)).map(p => p.hash))
  t.is(shared.size, a.templatePages, 'the VMs share exactly the template part')

  // the template part starts at each VM's own offset, with the same first page
  const first = generateTemplate(template.seed, template.pages).page(templatePagesHeld(template)[0])
  const firstHash = createHash('sha256').update(first).digest('hex')
  t.is(pagesA[a.templateOffsetPages].hash, firstHash)
  t.is(pagesB[b.templateOffsetPages].hash, firstHash)

  // a smaller fraction holds a subset of a larger one
  const quarter = new Set(templatePagesHeld({ ...template, fraction: 0.25 }))
  const half = new Set(templatePagesHeld(template))
  t.true([...quarter].every(j => half.has(j)))
})

test('template pages look like memory: distinct, non-zero, partly compressible', t => {
  const template = generateTemplate(3, 256)
  const pages = Array.from({ length: 256 }, (_, i) => template.page(i))
  t.true(pages.every(p => p.length === PAGE_SIZE && !p.equals(ZERO_PAGE)))
  t.is(new Set(pages.map(p => p.toString('hex'))).size, 256)
  const all = Buffer.concat(pages)
  const ratio = deflateSync(all).length / all.length
  t.log(`deflate ratio of template pages ${ratio.toFixed(2)}`)
  t.true(ratio < 0.8, 'compressible')
  t.true(ratio > 0.1, 'not trivially compressible')
})

test('evolveImage changes about changeFraction of the pages', async t => {
  const dir = await tempDir(t)
  await writeImage(join(dir, 'v1'), { sizeBytes: 16 * MiB, seed: 5, template: { seed: 9, pages: 1024 } })
  const summary = await evolveImage(join(dir, 'v1'), join(dir, 'v2'), { changeFraction: 0.2, seed: 11 })
  const before = await pageHashes(join(dir, 'v1'))
  const after = await pageHashes(join(dir, 'v2'))
  t.is(after.length, before.length)
  let changed = 0
  let newlyZero = 0
  let newlyNonZero = 0
  for (let i = 0; i < before.length; i++) {
    if (before[i].hash === after[i].hash) continue
    changed++
    if (after[i].zero) newlyZero++
    if (before[i].zero) newlyNonZero++
  }
  t.is(changed, summary.changedPages)
  t.is(newlyZero, summary.newlyZeroPages)
  t.is(newlyNonZero, summary.newlyNonZeroPages)
  t.true(Math.abs(changed / before.length - 0.2) < 0.02, `changed fraction ${changed / before.length}`)
  t.true(newlyZero > 0 && newlyNonZero > 0)
  // deterministic too
  await evolveImage(join(dir, 'v1'), join(dir, 'v2b'), { changeFraction: 0.2, seed: 11 })
  t.is(await fileHash(join(dir, 'v2')), await fileHash(join(dir, 'v2b')))
})

test('invalid options are typed errors', async t => {
  const dir = await tempDir(t)
  await t.throwsAsync(writeImage(join(dir, 'x'), { sizeBytes: 1000, seed: 1 }), { code: 'ERR_SYNTHETIC_INVALID_OPTIONS' })
  await t.throwsAsync(writeImage(join(dir, 'x'), { sizeBytes: MiB, seed: 1, zeroFraction: 0.7, duplicateFraction: 0.5 }), { code: 'ERR_SYNTHETIC_INVALID_OPTIONS' })
  await t.throwsAsync(writeImage(join(dir, 'x'), { sizeBytes: MiB, seed: -1 }), { code: 'ERR_SYNTHETIC_INVALID_OPTIONS' })
  await t.throwsAsync(evolveImage(join(dir, 'missing'), join(dir, 'y'), { changeFraction: 2, seed: 1 }), { code: 'ERR_SYNTHETIC_INVALID_OPTIONS' })
})
