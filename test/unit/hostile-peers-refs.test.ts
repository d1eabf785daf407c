/**
 * Creator records of pins (store/refs.ts): a fabric member's pin only adds, `release` frees
 * only that member's own images, and records written before creators existed count as local.
 */
import test from 'ava'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PAGE, seeded, tempRepo } from './store-helpers.ts'
import { Repo } from '../../store/repo.ts'
import { IndexDb } from '../../store/schema.ts'

const PEER_A = '12D3KooWAttackerAttackerAttackerAttackerAttackerAttack'
const PEER_B = '12D3KooWOtherOtherOtherOtherOtherOtherOtherOtherOther'

test('a member\'s pin records it as the creator and may not take a name another party holds', async t => {
  const { repo, tmp } = await tempRepo(t)
  const s = repo.store
  await writeFile(join(tmp, 'local'), seeded('local', PAGE * 8))
  await writeFile(join(tmp, 'peer'), seeded('peer', PAGE * 8))
  const local = await s.importImage(join(tmp, 'local'), { name: 'vm1' })
  // the peer's image arrives as its own import here; a pin on its behalf takes it over
  const theirs = await s.importImage(join(tmp, 'peer'))
  await s.remove(theirs.root)
  await s.pin(theirs.root, { partial: true, creator: PEER_A })
  t.is((await s.inspect(theirs.root)).creator, PEER_A)

  await t.throwsAsync(s.pin(theirs.root, { name: 'vm1', creator: PEER_A }), { code: 'ERR_NAME_TAKEN' })
  t.true((await s.resolve('vm1')).equals(local.root))
  await s.pin(theirs.root, { name: 'a-vm', creator: PEER_A })
  t.is((await s.inspect('a-vm')).creator, PEER_A)
  // another member may neither take the name nor release the image
  await t.throwsAsync(s.pin(local.root, { name: 'a-vm', creator: PEER_B }), { code: 'ERR_NAME_TAKEN' })
  t.false(await s.release(theirs.root, PEER_B))
  t.false(await s.release(local.root, PEER_A), 'a local image is nobody\'s to release')
  t.true((await s.resolve('vm1')).equals(local.root))
  // the local user may still move any name, as before
  await s.pin(local.root, { name: 'a-vm' })
  t.true((await s.resolve('a-vm')).equals(local.root))
})

test('a root pinned by a second party counts as local; release frees only the creator\'s own', async t => {
  const { repo, tmp } = await tempRepo(t)
  const s = repo.store
  await writeFile(join(tmp, 'img'), seeded('img', PAGE * 8))
  const { root } = await s.importImage(join(tmp, 'img'))
  await s.remove(root)
  await s.pin(root, { partial: true, creator: PEER_A })
  await s.pin(root, { name: 'shared', creator: PEER_B })
  t.is((await s.inspect(root)).creator, undefined)
  t.false(await s.release(root, PEER_A))
  t.deepEqual((await s.inspect(root)).names, ['shared'])

  await s.remove(root)
  await s.pin(root, { name: 'mine', creator: PEER_A })
  t.true(await s.release(root, PEER_A))
  await t.throwsAsync(s.inspect(root), { code: 'ERR_REF_NOT_FOUND' })
  await t.throwsAsync(s.resolve('mine'), { code: 'ERR_REF_NOT_FOUND' })
})

test('a pin record written before creators existed counts as local', async t => {
  const { repo, dir, tmp } = await tempRepo(t)
  await writeFile(join(tmp, 'img'), seeded('old', PAGE * 8))
  const { root } = await repo.store.importImage(join(tmp, 'img'))
  await repo.store.remove(root)
  await repo.store.pin(root, { name: 'old', creator: PEER_A })
  await repo.close()
  // rewrite the record as an older version wrote it: no creator field
  const index = new IndexDb(dir)
  await index.open()
  const { creator, ...legacy } = (await index.pins.get(root.toString()))!
  t.is(creator, PEER_A)
  await index.write([index.putPin(root.toString(), legacy)], true)
  await index.close()

  const again = await Repo.open(dir)
  t.teardown(async () => { await again.close() })
  t.is((await again.store.inspect('old')).creator, undefined)
  t.false(await again.store.release(root, PEER_A))
  // nor may its former creator move its name to another root
  await writeFile(join(tmp, 'other'), seeded('other', PAGE * 8))
  const other = await again.store.importImage(join(tmp, 'other'))
  await t.throwsAsync(again.store.pin(other.root, { name: 'old', creator: PEER_A }), { code: 'ERR_NAME_TAKEN' })
  t.true((await again.store.resolve('old')).equals(root))
})
