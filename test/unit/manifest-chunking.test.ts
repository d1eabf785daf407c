import test from 'ava'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { encode as cborEncode } from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { decodeRoot, encodeRoot } from '../../store/manifest.ts'
import { ChunkCutter } from '../../node/migration/chunk-cutter.ts'
import { PAGE, page, tempRepo } from './store-helpers.ts'

const SMALL = { chunkMin: 4, chunkModulus: 16, chunkMax: 256 }

test('a store with its own chunk settings records them in the root; default roots stay as they were', async t => {
  const { repo, tmp } = await tempRepo(t, SMALL)
  const file = join(tmp, 'img')
  await writeFile(file, Buffer.concat(Array.from({ length: 700 }, (_, i) => i % 9 === 0 ? Buffer.alloc(PAGE) : page(`p${i}`))))
  const { root } = await repo.store.importImage(file)
  const manifest = await repo.store.readManifest(root)
  t.deepEqual(manifest.chunking, { modulus: 16, min: 4, max: 256 })
  // default settings: no field, the same bytes as before the field existed
  const node = { format: 'raw' as const, size: PAGE, pageSize: PAGE, extents: [{ offset: 0, length: PAGE }], pages: 1, chunks: [] }
  const plain = encodeRoot(node)
  t.deepEqual(encodeRoot({ ...node, chunking: { modulus: 1024, min: 64, max: 4096 } }).bytes, plain.bytes)
  t.is(decodeRoot(plain.cid, plain.bytes).chunking, undefined)
})

test('the manifest rebuild cuts with the root\'s chunk settings: every chunk of a non-default import is found again', async t => {
  const { repo, tmp } = await tempRepo(t, SMALL)
  const file = join(tmp, 'img')
  await writeFile(file, Buffer.concat(Array.from({ length: 700 }, (_, i) => i % 9 === 0 ? Buffer.alloc(PAGE) : page(`q${i}`))))
  const { root } = await repo.store.importImage(file)
  const manifest = await repo.store.readManifest(root)
  t.true(manifest.chunks.length > 10)
  const stored: string[] = []
  const cutter = new ChunkCutter({ putBlock: async (cid) => { stored.push(cid.toString()) } }, manifest, manifest.chunks)
  for await (const slot of repo.store.pageSlots(root)) await cutter.slot(slot.cid?.multihash.digest)
  await cutter.flush()
  t.deepEqual(stored.sort(), manifest.chunks.map(c => c.toString()).sort())
})

test('a root with malformed chunk settings is refused before anything is cut', async t => {
  for (const chunking of [{ modulus: 3, min: 1, max: 8 }, { modulus: 16, min: 9, max: 8 }, { modulus: 16, min: 1, max: 1e9 }, { modulus: 16 }, 'x']) {
    const bytes = cborEncode({ format: 'raw', size: PAGE, pageSize: PAGE, extents: [{ offset: 0, length: PAGE }], pages: 1, chunks: [], chunking })
    const cid = CID.createV1(0x71, await sha256.digest(bytes))
    t.throws(() => decodeRoot(cid, bytes), { code: 'ERR_IMAGE_FORMAT' }, JSON.stringify(chunking))
  }
})
