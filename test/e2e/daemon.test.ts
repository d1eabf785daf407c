import test from 'ava'
import { access, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeImage } from '../../testnet/synthetic.ts'
import { cli, ok, tempDir } from './cli-helpers.ts'
import { startDaemon } from '../fixtures/daemon.ts'
import { waitFor } from '../fixtures/wait.ts'
import { DAEMON_NODE_FLAGS } from '../../cli/runtime.ts'
import { LocalApi } from '../../node/api/local.ts'

const MiB = 1024 * 1024

test('two daemons in two sites: import through the daemon, migrate, stop cleanly', async t => {
  const dir = await tempDir(t)
  const a = join(dir, 'a')
  const b = join(dir, 'b')
  await ok(t, ['init', '--repo', a, '--site', 'paris', '--listen', '/ip4/127.0.1.1/tcp/0'])
  await ok(t, ['init', '--repo', b, '--site', 'berlin', '--listen', '/ip4/127.0.2.1/tcp/0', '--fabric-key', join(a, 'fabric.key')])
  const da = await startDaemon(t, a)
  const db = await startDaemon(t, b, ['--bootstrap', da.info.addresses[0]])

  // the daemon replaced its own process once with its memory settings: same PID
  const cmdline = (await readFile(`/proc/${da.child.pid}/cmdline`, 'utf8')).split('\0')
  const environ = (await readFile(`/proc/${da.child.pid}/environ`, 'utf8')).split('\0')
  for (const flag of DAEMON_NODE_FLAGS) t.true(cmdline.includes(flag), cmdline.join(' '))
  t.true(environ.includes('MALLOC_ARENA_MAX=2'))

  const id = await ok(t, ['id', '--repo', a, '--json'])
  t.is(id.peerId, da.info.peerId)
  t.is(id.site, 'paris')

  await waitFor(async () => {
    const peers = await ok(t, ['peers', '--repo', b, '--json'])
    return peers.some((p: any) => p.peerId === da.info.peerId && p.site === 'paris')
  })

  const image = join(dir, 'vm.ram')
  await writeImage(image, { sizeBytes: 8 * MiB, seed: 3 })
  const imported = await ok(t, ['import', image, '--name', 'vm1', '--repo', a, '--json'])

  const details = await ok(t, ['inspect', 'vm1', '--repo', a, '--json'])
  t.is(details.root, imported.root)

  const report = await ok(t, ['migrate', 'vm1', '--to', db.info.peerId, '--out', 'vm1.ram', '--repo', a, '--json'])
  t.is(report.root, imported.root)
  t.true(report.tiers.source.pages > 0)
  t.true(report.wanBytes > 0)
  t.deepEqual(await readFile(join(b, 'out', 'vm1.ram')), await readFile(image))
  const onB = await ok(t, ['ls', '--repo', b, '--json'])
  t.true(onB.some((i: any) => i.root === imported.root && i.names.includes('vm1') && i.complete))

  // a destination refuses to write outside its output folder
  const escape = await cli(['migrate', 'vm1', '--to', db.info.peerId, '--out', '../../escape.ram', '--repo', a])
  t.not(escape.code, 0)
  t.regex(escape.stderr, /may only write inside/)

  t.is(await da.stop(), 0)
  t.is(await db.stop(), 0)
  await t.throwsAsync(access(join(a, 'api')), undefined, 'the api file is removed on clean stop')
  // offline commands work again once the daemon is gone
  const ls = await ok(t, ['ls', '--repo', a, '--json'])
  t.is(ls.length, 1)
})

test('a daemon of another fabric cannot connect', async t => {
  const dir = await tempDir(t)
  const a = join(dir, 'a')
  const stranger = join(dir, 'stranger')
  await ok(t, ['init', '--repo', a, '--site', 'paris', '--listen', '/ip4/127.0.1.2/tcp/0'])
  await ok(t, ['init', '--repo', stranger, '--site', 'paris', '--listen', '/ip4/127.0.1.3/tcp/0'])
  const da = await startDaemon(t, a)
  const ds = await startDaemon(t, stranger, ['--bootstrap', da.info.addresses[0]])
  const pull = await cli(['pull', 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku', '--from', da.info.addresses[0], '--repo', stranger])
  t.not(pull.code, 0)
  t.regex(pull.stderr, /cannot reach peer/)
  const peers = await ok(t, ['peers', '--repo', a, '--json'])
  t.false(peers.some((p: any) => p.peerId === ds.info.peerId))
})

test('a command and a starting daemon wait for each other instead of failing with "repository in use"', async t => {
  const dir = await tempDir(t)
  const repo = join(dir, 'r')
  await ok(t, ['init', '--repo', repo, '--site', 'paris', '--listen', '/ip4/127.0.1.6/tcp/0'])
  // this process plays a CLI command holding the repository while the daemon starts
  const held = await LocalApi.open(repo)
  const starting = startDaemon(t, repo)
  starting.catch(() => {})
  // and a second command arrives meanwhile: it finds the lock but no daemon yet
  const ls = cli(['ls', '--repo', repo, '--json'])
  await new Promise(resolve => setTimeout(resolve, 1500))
  await held.close()
  const d = await starting
  const listed = await ls
  t.is(listed.code, 0, listed.stderr)
  t.deepEqual(JSON.parse(listed.stdout), [])
  t.is(d.child.exitCode, null, 'the daemon runs')
  t.is((await ok(t, ['id', '--repo', repo, '--json'])).peerId, d.info.peerId)
  // a second daemon on a served repository is refused at once, not after the wait
  const second = await cli(['daemon', '--repo', repo, '--api-port', '0'])
  t.is(second.code, 1)
  t.regex(second.stderr, /in use by PID \d+: a daemon already serves it/)
})
