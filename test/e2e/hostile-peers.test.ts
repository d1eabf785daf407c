/**
 * Hostile fabric members against real daemons: a member's migration only adds (names and
 * `previous` of other parties' images are refused or ignored, `export` and `gc` keep the
 * victim's bytes), `--accept-from` refuses members it does not list, and `--peer-quota`
 * bounds a member's partial images. The hostile member that sends crafted offers is a real
 * node in the test process with the fabric key.
 */
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { Repo } from '../../store/repo.ts'
import { MemfabricNode } from '../../node/node.ts'
import { cli, makeImage, ok, tempDir, writeTemp } from './cli-helpers.ts'
import type { CliResult } from './cli-helpers.ts'
import { startDaemon } from '../fixtures/daemon.ts'

function refused (t: ExecutionContext, r: CliResult, pattern: RegExp): void {
  t.is(r.code, 1, `exit code; stderr: ${r.stderr}`)
  t.is(r.stderr.trimEnd().split('\n').length, 1, `one line on stderr: ${r.stderr}`)
  t.regex(r.stderr, pattern)
}

test('a member\'s offer never replaces or releases an image it did not create', async t => {
  const dir = await tempDir(t)
  const victim = join(dir, 'victim')
  const attacker = join(dir, 'attacker')
  const hostile = join(dir, 'hostile')
  await ok(t, ['init', '--repo', victim, '--site', 'a', '--listen', '/ip4/127.0.1.60/tcp/0'])
  for (const [repo, ip] of [[attacker, '61'], [hostile, '62']]) {
    await ok(t, ['init', '--repo', repo, '--site', 'a', '--listen', `/ip4/127.0.1.${ip}/tcp/0`, '--fabric-key', join(victim, 'fabric.key')])
  }
  const dv = await startDaemon(t, victim)
  await startDaemon(t, attacker, ['--bootstrap', dv.info.addresses[0]])

  const mine = makeImage(64, 0)
  const { root: victimRoot } = await ok(t, ['import', await writeTemp(dir, 'mine.ram', mine.bytes), '--name', 'vm1', '--repo', victim, '--json'])
  const evil = makeImage(64, 0)
  await ok(t, ['import', await writeTemp(dir, 'evil.ram', evil.bytes), '--name', 'evil', '--repo', attacker, '--json'])

  // the attacker's migration names the victim's image: refused in one line
  refused(t, await cli(['migrate', 'evil', '--to', dv.info.peerId, '--name', 'vm1', '--repo', attacker]), /ERR_NAME_TAKEN|belongs to an image/)

  // a crafted live round whose previous is the victim's root: the round lands, the victim's image stays
  const repo = await Repo.open(hostile)
  const node = await MemfabricNode.create({ repo, bootstrap: dv.info.addresses, publish: true })
  t.teardown(async () => { await node.stop(); await repo.close() })
  const round = makeImage(32, 0)
  const { root: roundRoot } = await repo.store.importImage(await writeTemp(dir, 'round.ram', round.bytes))
  await node.flushAnnouncements()
  await node.offer(dv.info.addresses[0], { root: CID.parse(roundRoot.toString()), name: 'hostile-vm', round: 2, previous: CID.parse(victimRoot) })
  // and the name of the victim's image through a crafted offer too
  await t.throwsAsync(node.offer(dv.info.addresses[0], { root: CID.parse(roundRoot.toString()), name: 'vm1', round: 3, previous: CID.parse(victimRoot) }), { code: 'ERR_NAME_TAKEN' })

  await ok(t, ['gc', '--repo', victim, '--json'])
  const out = join(dir, 'check.ram')
  await ok(t, ['export', 'vm1', '--out', out, '--repo', victim, '--json'])
  t.true((await readFile(out)).equals(mine.bytes), 'export of vm1 still gives the victim\'s bytes')
  const images: any[] = await ok(t, ['ls', '--repo', victim, '--json'])
  const victims = images.find((i: any) => i.root === victimRoot)
  t.deepEqual(victims.names, ['vm1'])
  const verified = await ok(t, ['verify', '--deep', '--repo', victim, '--json'])
  t.true(verified.ok)
  t.is(dv.child.exitCode, null, 'the victim daemon keeps serving')
})

test('--accept-from refuses other members, --peer-quota refuses an offer beyond it', async t => {
  const dir = await tempDir(t)
  const strict = join(dir, 'strict')
  const quota = join(dir, 'quota')
  const member = join(dir, 'member')
  await ok(t, ['init', '--repo', strict, '--site', 'a', '--listen', '/ip4/127.0.1.70/tcp/0'])
  for (const [repo, ip] of [[quota, '71'], [member, '72']]) {
    await ok(t, ['init', '--repo', repo, '--site', 'a', '--listen', `/ip4/127.0.1.${ip}/tcp/0`, '--fabric-key', join(strict, 'fabric.key')])
  }
  const quotaId = (await ok(t, ['id', '--repo', quota, '--json'])).peerId

  const bad = await cli(['daemon', '--repo', strict, '--api-port', '0', '--accept-from', 'not-a-peer'])
  t.is(bad.code, 1)
  t.regex(bad.stderr, /--accept-from 'not-a-peer' is not a peer id/)

  // strict accepts only the quota host; the member is refused
  const ds = await startDaemon(t, strict, ['--accept-from', quotaId])
  const dq = await startDaemon(t, quota, ['--bootstrap', ds.info.addresses[0], '--peer-quota', '256K'])
  await startDaemon(t, member, ['--bootstrap', ds.info.addresses[0]])
  const image = makeImage(128, 0) // 512 KiB
  await ok(t, ['import', await writeTemp(dir, 'vm.ram', image.bytes), '--name', 'vm', '--repo', member, '--json'])
  refused(t, await cli(['migrate', 'vm', '--to', ds.info.peerId, '--name', 'vm', '--repo', member]), /does not accept migrations from/)
  refused(t, await cli(['migrate', 'vm', '--to', dq.info.peerId, '--name', 'vm', '--repo', member]), /quota/)
  refused(t, await cli(['inspect', 'vm', '--repo', quota]), /no image named "vm"/)

  // within the quota the same member is accepted
  const small = makeImage(32, 0) // 128 KiB
  await ok(t, ['import', await writeTemp(dir, 'small.ram', small.bytes), '--name', 'small', '--repo', member, '--json'])
  await ok(t, ['migrate', 'small', '--to', dq.info.peerId, '--name', 'small', '--repo', member, '--json'])
  const out = join(dir, 'small-out.ram')
  await ok(t, ['export', 'small', '--out', out, '--repo', quota, '--json'])
  t.true((await readFile(out)).equals(small.bytes))
})
