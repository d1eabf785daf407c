import test from 'ava'
import type { ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import { access, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeImage } from '../../testnet/synthetic.ts'
import { cli, ok, tempDir } from './cli-helpers.ts'
import { startDaemon } from '../fixtures/daemon.ts'
import type { RunningDaemon } from '../fixtures/daemon.ts'

const MiB = 1024 * 1024

// Dirties random pages of a RAM file, as a running guest would, for at most two minutes.
const WRITER = `
const fs = require('node:fs')
const [file, pages] = process.argv.slice(1)
const fd = fs.openSync(file, 'r+')
const page = Buffer.alloc(4096)
const until = Date.now() + 120000
setInterval(() => {
  if (Date.now() > until) process.exit(0)
  for (let i = 0; i < 8; i++) {
    require('node:crypto').randomFillSync(page)
    fs.writeSync(fd, page, 0, 4096, Math.floor(Math.random() * Number(pages)) * 4096)
  }
}, 5)
`

/** Repositories `a` (paris, 127.0.1.HOST) and `b` (berlin, 127.0.2.HOST) of one fabric, a daemon on each. */
async function twoSites (t: ExecutionContext, dir: string, host: number): Promise<{ a: string, b: string, db: RunningDaemon }> {
  const a = join(dir, 'a')
  const b = join(dir, 'b')
  await ok(t, ['init', '--repo', a, '--site', 'paris', '--listen', `/ip4/127.0.1.${host}/tcp/0`])
  await ok(t, ['init', '--repo', b, '--site', 'berlin', '--listen', `/ip4/127.0.2.${host}/tcp/0`, '--fabric-key', join(a, 'fabric.key')])
  const da = await startDaemon(t, a)
  const db = await startDaemon(t, b, ['--bootstrap', da.info.addresses[0]])
  return { a, b, db }
}

test('live migration: pre-copy rounds while the RAM file changes, pause, final round byte-identical', async t => {
  const dir = await tempDir(t)
  const { a, b, db } = await twoSites(t, dir, 4)

  const ram = join(dir, 'vm.ram')
  await writeImage(ram, { sizeBytes: 16 * MiB, seed: 9 })
  // a small working set: the guest keeps rewriting the same 256 pages
  const writer = spawn(process.execPath, ['-e', WRITER, ram, '256'], { stdio: 'ignore' })
  t.teardown(() => { writer.kill('SIGKILL') })

  // REF relative to the caller's directory, and a pause command that runs in the caller's
  // process (its relative marker lands in the caller's directory; the daemons run elsewhere)
  const report = await ok(t, ['migrate', 'vm.ram', '--live', '--name', 'vm1', '--out', 'vm1.ram', '--max-rounds', '4',
    '--pause-cmd', `kill -STOP ${writer.pid} && touch paused-by-cli`, '--to', db.info.peerId, '--repo', a, '--json'], { cwd: dir })
  await access(join(dir, 'paused-by-cli'))

  t.true(report.rounds >= 2, `rounds: ${report.rounds}`)
  t.is(report.roundsDetail.length, report.rounds)
  t.true(report.roundsDetail[report.roundsDetail.length - 1].final)
  // later rounds only ship what changed
  t.true(report.roundsDetail[1].dirtyPages < report.roundsDetail[0].dirtyPages)
  t.true(typeof report.downtimeMs === 'number')
  // the writer is stopped: the destination holds exactly the paused RAM
  t.deepEqual(await readFile(join(b, 'out', 'vm1.ram')), await readFile(ram))
  const images = await ok(t, ['ls', '--repo', b, '--json'])
  t.is(images.filter((i: any) => i.names.includes('vm1')).length, 1)
  t.true(images.every((i: any) => i.complete))
  writer.kill('SIGKILL')
})

test('live migration: a failing pause command fails the migration in the caller, with its code', async t => {
  const dir = await tempDir(t)
  const { a, db } = await twoSites(t, dir, 5)
  const ram = join(dir, 'vm.ram')
  await writeImage(ram, { sizeBytes: 2 * MiB, seed: 4 })
  const r = await cli(['migrate', ram, '--live', '--max-rounds', '2', '--pause-cmd', 'echo no such vm >&2; exit 3',
    '--to', db.info.addresses[0], '--repo', a])
  t.is(r.code, 1)
  t.regex(r.stderr, /pause command failed \(3\): no such vm/)
})
