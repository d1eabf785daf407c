import test from 'ava'
import { readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { ClassicLevel } from 'classic-level'
import type { AbstractSublevel } from 'abstract-level'
import { Repo } from '../../store/repo.ts'
import { PAGE, seeded, tempRepo } from './store-helpers.ts'

type Legacy = AbstractSublevel<ClassicLevel<string, string>, string | Buffer | Uint8Array, string, Uint8Array>

/** Run `fn` on the `blocks` sublevel of the (closed) repository's index, where older layouts kept blocks. */
async function withLegacyBlocks (dir: string, fn: (legacy: Legacy) => Promise<void>): Promise<void> {
  const db = new ClassicLevel<string, string>(join(dir, 'index'), { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  try {
    await fn(db.sublevel<string, Uint8Array>('blocks', { keyEncoding: 'utf8', valueEncoding: 'view' }))
  } finally {
    await db.close()
  }
}

const blockFiles = async (dir: string): Promise<string[]> => (await readdir(join(dir, 'blocks'))).sort()

test('manifest blocks are files; gc removes those of removed images', async t => {
  const { repo, dir, tmp } = await tempRepo(t)
  const s = repo.store
  await writeFile(join(tmp, 'a'), seeded('a', PAGE * 3000))
  await writeFile(join(tmp, 'b'), seeded('b', PAGE * 3000))
  const a = await s.importImage(join(tmp, 'a'), { name: 'a' })
  const withA = await blockFiles(dir)
  t.true(withA.includes(a.root.toString()))
  t.true(withA.length > 1, 'root and chunks')
  const b = await s.importImage(join(tmp, 'b'), { name: 'b' })
  const both = await blockFiles(dir)
  t.true(both.includes(b.root.toString()))
  await s.remove('b')
  await s.gc()
  t.deepEqual(await blockFiles(dir), withA)
  await s.exportImage('a', join(tmp, 'a.out'))
  t.true((await readFile(join(tmp, 'a.out'))).equals(await readFile(join(tmp, 'a'))))
})

test('a block file that does not match its CID (torn by a crash) reads as absent and is removed', async t => {
  const { repo, dir, tmp } = await tempRepo(t)
  const s = repo.store
  await writeFile(join(tmp, 'a'), seeded('a', PAGE * 3000))
  const { root } = await s.importImage(join(tmp, 'a'), { name: 'a' })
  const manifest = await s.readManifest(root)
  const chunk = manifest.chunks[0]
  const path = join(dir, 'blocks', chunk.toString())
  const good = await readFile(path)
  await writeFile(path, good.subarray(0, good.byteLength >> 1))
  t.false(await s.hasBlock(chunk))
  t.false((await blockFiles(dir)).includes(chunk.toString()))
  await s.putBlock(chunk, good)
  const back = await s.getBlock(chunk)
  t.true(back != null && Buffer.from(back).equals(good))
})

test('a repository that kept its blocks in the index has them moved to files on open', async t => {
  const { repo, dir, tmp } = await tempRepo(t)
  const image = seeded('a', PAGE * 3000)
  await writeFile(join(tmp, 'a'), image)
  const { root } = await repo.store.importImage(join(tmp, 'a'), { name: 'a' })
  const names = await blockFiles(dir)
  await repo.close()
  // put the repository back in the older layout: blocks in the index's `blocks` sublevel
  await withLegacyBlocks(dir, async legacy => {
    for (const name of names) {
      await legacy.put(name, await readFile(join(dir, 'blocks', name)))
      await rm(join(dir, 'blocks', name))
    }
  })

  const reopened = await Repo.open(dir)
  t.teardown(async () => { await reopened.close() })
  t.deepEqual(await blockFiles(dir), names)
  t.true(await reopened.store.hasBlock(CID.parse(root.toString())))
  await reopened.store.exportImage('a', join(tmp, 'a.out'))
  t.true((await readFile(join(tmp, 'a.out'))).equals(image))
  await reopened.close()
  await withLegacyBlocks(dir, async legacy => {
    t.is((await legacy.keys().all()).length, 0)
  })
})
