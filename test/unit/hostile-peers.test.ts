/**
 * A fabric member's migration offers against real nodes on loopback: an offer only adds, a
 * live round's `previous` releases only the offering peer's own image, `acceptFrom` refuses
 * others, and a peer's partial images are bounded by its quota (SECURITY.md, "Fabric members").
 */
import test from 'ava'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { writeImage } from '../../testnet/synthetic.ts'
import { startFabric } from '../fixtures/fabric.ts'
import type { FabricNode } from '../fixtures/fabric.ts'

const MiB = 1024 * 1024

async function tempDir (t: any): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-hostile-'))
  t.teardown(async () => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Import a fresh image of `mib` MiB (content from `seed`) into `node`; returns its root and bytes. */
async function image (dir: string, node: FabricNode, seed: number, name?: string, mib = 2): Promise<{ root: CID, bytes: Buffer }> {
  const file = join(dir, `img-${seed}.ram`)
  await writeImage(file, { sizeBytes: mib * MiB, seed })
  const { root } = await node.repo.store.importImage(file, { name })
  return { root: CID.parse(root.toString()), bytes: await readFile(file) }
}

/** The victim's image still exports its own bytes after a gc. */
async function assertIntact (t: any, dir: string, victim: FabricNode, name: string, bytes: Buffer): Promise<void> {
  await victim.repo.store.gc()
  const out = join(dir, `check-${name}.ram`)
  await victim.repo.store.exportImage(name, out)
  t.true((await readFile(out)).equals(bytes), `${name} still holds the victim's bytes`)
  t.true((await victim.repo.store.verify({ deep: true })).ok)
}

test('an offer naming an image another party created is refused: the victim keeps its name, bytes and pages', async t => {
  const dir = await tempDir(t)
  const [attacker, victim] = await startFabric(t, { sites: { a: 2 } })
  const mine = await image(dir, victim, 1, 'vm1')
  const evil = await image(dir, attacker, 2)

  await t.throwsAsync(attacker.node.offer(victim.node.peerId, { root: evil.root, name: 'vm1' }), { code: 'ERR_NAME_TAKEN' })

  t.is((await victim.repo.store.resolve('vm1')).toString(), mine.root.toString())
  t.is((await victim.repo.store.inspect('vm1')).creator, undefined, 'a local import is local')
  await assertIntact(t, dir, victim, 'vm1', mine.bytes)
  // the refused offer fetched nothing: no image of the attacker's is pinned
  t.false((await victim.repo.store.list()).some(i => i.root.equals(evil.root)))
})

test('a previous naming a root someone else created does not unpin it; the peer\'s own previous is released', async t => {
  const dir = await tempDir(t)
  const [attacker, victim] = await startFabric(t, { sites: { a: 2 } })
  const mine = await image(dir, victim, 3, 'vm1')
  const r1 = await image(dir, attacker, 4)
  const r2 = await image(dir, attacker, 5)

  // round 1 of the attacker's own migration, then round 2 naming the victim's root as previous
  await attacker.node.offer(victim.node.peerId, { root: r1.root, name: 'evil', round: 1 })
  t.is((await victim.repo.store.inspect('evil')).creator, attacker.node.peerId.toString())
  await attacker.node.offer(victim.node.peerId, { root: r2.root, name: 'evil', round: 2, previous: mine.root })
  t.deepEqual((await victim.repo.store.inspect(mine.root)).names, ['vm1'])
  await assertIntact(t, dir, victim, 'vm1', mine.bytes)

  // the same member's previous round is its own: released, and the name moved with the round
  await attacker.node.offer(victim.node.peerId, { root: r1.root, name: 'evil2', round: 3, previous: r2.root })
  t.false((await victim.repo.store.list()).some(i => i.root.equals(r2.root)), 'its own previous round is released')
  t.is((await victim.repo.store.resolve('evil2')).toString(), r1.root.toString())
})

test('an offer of a root the host already holds adds a name but never makes it the offering peer\'s', async t => {
  const dir = await tempDir(t)
  const [attacker, victim] = await startFabric(t, { sites: { a: 2 } })
  const mine = await image(dir, victim, 6, 'vm1')
  // the attacker knows the victim's content (a well-known image)
  await attacker.repo.store.importImage(join(dir, 'img-6.ram'))
  const r1 = await image(dir, attacker, 7)

  await attacker.node.offer(victim.node.peerId, { root: mine.root, name: 'also' })
  t.is((await victim.repo.store.inspect(mine.root)).creator, undefined)
  await attacker.node.offer(victim.node.peerId, { root: r1.root, name: 'also2', round: 2, previous: mine.root })
  t.deepEqual((await victim.repo.store.inspect(mine.root)).names.sort(), ['also', 'vm1'])
  await assertIntact(t, dir, victim, 'vm1', mine.bytes)
})

test('a peer may move a name it holds to its next round; another member may not take it', async t => {
  const dir = await tempDir(t)
  const [a, victim, c] = await startFabric(t, { sites: { a: 3 } })
  const r1 = await image(dir, a, 8)
  const r2 = await image(dir, a, 9)
  const other = await image(dir, c, 10)
  await a.node.offer(victim.node.peerId, { root: r1.root, name: 'vm-a', round: 1 })
  await a.node.offer(victim.node.peerId, { root: r2.root, name: 'vm-a', round: 2, previous: r1.root })
  t.is((await victim.repo.store.resolve('vm-a')).toString(), r2.root.toString())
  await t.throwsAsync(c.node.offer(victim.node.peerId, { root: other.root, name: 'vm-a' }), { code: 'ERR_NAME_TAKEN' })
  await assertIntact(t, dir, victim, 'vm-a', r2.bytes)
})

test('two members offering the same out: one writes it, the other is refused', async t => {
  const dir = await tempDir(t)
  const [a, victim, c] = await startFabric(t, { sites: { a: 3 } })
  const ia = await image(dir, a, 11, undefined, 8)
  const ic = await image(dir, c, 12, undefined, 8)
  const results = await Promise.allSettled([
    a.node.offer(victim.node.peerId, { root: ia.root, out: 'vm.ram' }),
    c.node.offer(victim.node.peerId, { root: ic.root, out: 'vm.ram' })
  ])
  const won = results.map(r => r.status === 'fulfilled')
  t.is(won.filter(Boolean).length, 1, 'exactly one migration owns the out path')
  const lost = results.find(r => r.status === 'rejected') as PromiseRejectedResult
  t.true(['ERR_MIGRATION_CONFLICT', 'ERR_OUT_TAKEN'].includes(lost.reason.code), lost.reason.code)
  const written = await readFile(join(victim.dir, 'out', 'vm.ram'))
  t.true(written.equals(won[0] ? ia.bytes : ic.bytes))
  // afterwards too, the other member cannot replace it; the winner can write it again
  const [loser, winner] = won[0] ? [c, a] : [a, c]
  await t.throwsAsync(loser.node.offer(victim.node.peerId, { root: (won[0] ? ic : ia).root, out: 'vm.ram' }), { code: 'ERR_OUT_TAKEN' })
  await winner.node.offer(victim.node.peerId, { root: (won[0] ? ia : ic).root, out: 'vm.ram' })
  // a file the operator put there is nobody's to replace, and dot files are the node's own
  await writeFile(join(victim.dir, 'out', 'local.ram'), 'mine')
  await t.throwsAsync(a.node.offer(victim.node.peerId, { root: ia.root, out: 'local.ram' }), { code: 'ERR_OUT_TAKEN' })
  t.is(await readFile(join(victim.dir, 'out', 'local.ram'), 'utf8'), 'mine')
  await t.throwsAsync(a.node.offer(victim.node.peerId, { root: ia.root, out: '.vm.ram.peer' }), { code: 'ERR_OUT_PATH' })
})

test('acceptFrom refuses members it does not list', async t => {
  const dir = await tempDir(t)
  const stranger = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const [a, b] = await startFabric(t, { sites: { a: 2 }, node: { acceptFrom: [stranger] } })
  const img = await image(dir, a, 13)
  await t.throwsAsync(a.node.offer(b.node.peerId, { root: img.root, name: 'x' }), { code: 'ERR_OFFER_REFUSED' })
  t.deepEqual(await b.repo.store.list(), [])
})

test('acceptFrom none refuses everyone; a listed peer is accepted', async t => {
  const dir = await tempDir(t)
  const [a, b] = await startFabric(t, { sites: { a: 2 }, node: { acceptFrom: 'none' } })
  const img = await image(dir, a, 14)
  await t.throwsAsync(a.node.offer(b.node.peerId, { root: img.root }), { code: 'ERR_OFFER_REFUSED' })
  const [c, d] = await startFabric(t, { sites: { a: 2 } })
  await d.node.stop()
  const { MemfabricNode } = await import('../../node/node.ts')
  const listed = await MemfabricNode.create({ repo: d.repo, bootstrap: c.node.libp2p.getMultiaddrs().map(String), acceptFrom: [c.node.peerId.toString()] })
  t.teardown(async () => { await listed.stop() })
  const ok = await image(dir, c, 15)
  await c.node.offer(listed.libp2p.getMultiaddrs()[0], { root: ok.root, name: 'ok' })
  t.is((await d.repo.store.inspect('ok')).creator, c.node.peerId.toString())
})

test('a malformed acceptFrom id refuses to start the node', async t => {
  await t.throwsAsync(startFabric(t, { sites: { a: 1 }, node: { acceptFrom: ['not-a-peer'] } }), { code: 'ERR_INVALID_REF' })
})

test('the partial quota refuses an offer beyond it, before any page is fetched', async t => {
  const dir = await tempDir(t)
  const [a, b] = await startFabric(t, { sites: { a: 2 }, node: { partialQuota: 3 * MiB } })
  const small = await image(dir, a, 16, undefined, 2)
  const big = await image(dir, a, 17, undefined, 4)
  await t.throwsAsync(a.node.offer(b.node.peerId, { root: big.root, name: 'big' }), { code: 'ERR_PEER_QUOTA' })
  t.false((await b.repo.store.list()).some(i => i.root.equals(big.root)))
  // within the quota: accepted (a complete image no longer counts against it)
  await a.node.offer(b.node.peerId, { root: small.root, name: 'small' })
  await a.node.offer(b.node.peerId, { root: (await image(dir, a, 18, undefined, 2)).root, name: 'small2' })
  // an abandoned partial image counts: a second one past the quota is refused
  const partial = await image(dir, a, 19, undefined, 2)
  await b.repo.store.putBlock(partial.root, (await a.repo.store.getBlock(partial.root))!)
  await b.repo.store.pin(partial.root, { partial: true, creator: a.node.peerId.toString() })
  t.is((await b.repo.store.inspect(partial.root)).size, 2 * MiB)
  const next = await image(dir, a, 20, undefined, 2)
  await t.throwsAsync(a.node.offer(b.node.peerId, { root: next.root }), { code: 'ERR_PEER_QUOTA' })
})
