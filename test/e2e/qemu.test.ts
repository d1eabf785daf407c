import test from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { access } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { BIN, childEnv, cli, ok, tempDir } from './cli-helpers.ts'
import { startDaemon } from '../fixtures/daemon.ts'
import { waitFor } from '../fixtures/wait.ts'
import { buildInitramfs, findKernel, guestPrerequisiteMissing, qemuMissing, startGuest } from '../fixtures/guest/qemu.ts'
import { QmpClient } from '../../qemu/index.ts'

// skipped only where QEMU itself is absent; CI installs it (.ci/run), and then a missing
// kernel or busybox is a failure, not a skip
const missing = await qemuMissing()
const qemuTest = missing === undefined ? test.serial : test.skip
if (missing !== undefined) console.warn(`skipping the QEMU migration test: ${missing}`)

qemuTest('a running QEMU guest migrates live through the fabric to another site and back, and keeps counting', async t => {
  t.timeout(900_000)
  const prerequisite = await guestPrerequisiteMissing()
  if (prerequisite !== undefined) throw new Error(`QEMU is installed but the test guest cannot be built: ${prerequisite}`)
  const dir = await tempDir(t)
  const kernel = await findKernel() as string
  const initrd = await buildInitramfs(join(dir, 'guest.cpio.gz'))

  const a = join(dir, 'a')
  const b = join(dir, 'b')
  await ok(t, ['init', '--repo', a, '--site', 'paris', '--listen', '/ip4/127.0.1.7/tcp/0'])
  await ok(t, ['init', '--repo', b, '--site', 'berlin', '--listen', '/ip4/127.0.2.7/tcp/0', '--fabric-key', join(a, 'fabric.key')])
  const da = await startDaemon(t, a)
  const db = await startDaemon(t, b, ['--bootstrap', da.info.addresses[0]])
  await waitFor(async () => {
    const peers = await ok(t, ['peers', '--repo', b, '--json'])
    return peers.some((p: any) => p.peerId === da.info.peerId && p.site === 'paris')
  }, { timeout: 30_000, message: 'the daemons did not connect' })

  const src = await startGuest(t, { dir, name: 'src', kernel, initrd })
  await waitFor(async () => (await src.counters()).length >= 10, { timeout: 180_000, interval: 200, message: 'the source guest did not boot and count' })
  const dst = await startGuest(t, { dir, name: 'dst', kernel, initrd, incoming: true })

  const run = await cli(['qemu', 'migrate', '--live', '--qmp', src.qmp, '--to', db.info.peerId,
    '--dest-qmp', dst.qmp, '--dest-repo', b, '--repo', a, '--json'])
  if (run.code !== 0) t.fail(`qemu migrate exited ${run.code}: ${run.stderr}`)
  const report = JSON.parse(run.stdout)
  t.log(`downtime ${Math.round(report.downtimeMs)} ms (final round ${Math.round(report.downtime.finalRoundMs)}, install ${Math.round(report.downtime.installMs)}, verify ${Math.round(report.downtime.verifyMs)}, device state ${Math.round(report.downtime.deviceStateMs)}), ${report.rounds} rounds, WAN ${report.wanBytes} B, device state ${report.deviceStateBytes} B`)

  t.true(report.live)
  t.is(report.resumedBy, 'here')
  t.true(report.rounds >= 2, 'pre-copy rounds and a final round')
  t.true(report.downtimeMs > 0)
  t.true(report.wanBytes > 0)
  t.true(report.tiers.source.pages + report.tiers.remote.pages > 0)
  t.is(report.verifiedRoot, report.root, 'the destination RAM re-hashes to the migrated root')
  t.is(report.ram, src.ram)
  t.is(report.destRam, dst.ram)
  await t.throwsAsync(access(join(b, 'out', 'src.ram.qemu-staging')), undefined, 'the staging file is removed')
  t.true(report.installedPages > 0)

  // the source has been stopped since the switch-over: its RAM file is still the switch-over RAM
  t.is(await status(src.qmp), 'postmigrate')
  // hash at the switch: the source RAM file hashes to the root the destination's file had before `cont`
  const scratch = join(dir, 'scratch')
  await ok(t, ['init', '--repo', scratch, '--site', 'paris'])
  const srcImport = await ok(t, ['import', src.ram, '--repo', scratch, '--json'])
  t.is(srcImport.root, report.verifiedRoot, 'the source and destination RAM files are identical at the switch-over')

  // the same guest keeps counting at the destination (no reboot: it does not start again at 1)
  const last = Math.max(...await src.counters())
  const after = await waitFor(async () => {
    const seen = await dst.counters()
    return seen.length > 0 && Math.max(...seen) > last + 5 ? seen : undefined
  }, { timeout: 60_000, interval: 200, message: 'the destination guest did not keep counting' })
  t.true(Math.min(...after) >= last, `the destination continues from ${last}, first printed ${Math.min(...after)}`)
  t.is(await status(dst.qmp), 'running')

  // and back to the first site, the two sides driven separately (as on two hosts): a receiver
  // next to the destination QEMU and daemon, the migration on the source host
  const back = await startGuest(t, { dir, name: 'back', kernel, initrd, incoming: true })
  const port = await freePort()
  const receiver = spawn(process.execPath, [BIN, 'qemu', 'receive', '--qmp', back.qmp, '--name', 'vm1', '--incoming', `tcp:127.0.0.1:${port}`, '--repo', a, '--json'],
    { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  const receiverExit = once(receiver, 'exit') as Promise<[number | null]>
  t.teardown(async () => { if (receiver.exitCode === null && receiver.signalCode === null) { receiver.kill('SIGKILL'); await receiverExit } })
  let receiverOut = ''
  let receiverErr = ''
  receiver.stdout.setEncoding('utf8').on('data', (s: string) => { receiverOut += s })
  receiver.stderr.setEncoding('utf8').on('data', (s: string) => { receiverErr += s })
  await waitFor(() => receiverErr.includes('waiting for the migration') || receiver.exitCode !== null, { timeout: 60_000, message: 'the receiver did not get ready' })
  t.is(receiver.exitCode, null, receiverErr)

  const run2 = await cli(['qemu', 'migrate', '--live', '--qmp', dst.qmp, '--name', 'vm1', '--to', da.info.peerId,
    '--incoming', `tcp:127.0.0.1:${port}`, '--repo', b, '--json'])
  if (run2.code !== 0) t.fail(`qemu migrate (back) exited ${run2.code}: ${run2.stderr}`)
  const [code] = await receiverExit
  t.is(code, 0, receiverErr)
  const report2 = JSON.parse(run2.stdout)
  const received = JSON.parse(receiverOut)
  t.log(`back: downtime ${Math.round(report2.downtimeMs)} ms at the source + ${Math.round(received.downtime.resumeMs)} ms to resume, ${report2.rounds} rounds, WAN ${report2.wanBytes} B (local store ${report2.tiers.local.pages} pages)`)
  t.is(report2.resumedBy, 'receiver')
  t.true(received.resumed)
  t.is(received.root, report2.root, 'the receiver verified the RAM it resumed against the migrated root')
  t.true(report2.tiers.local.pages > 0, 'pages the first site still held did not travel again')
  t.true(report2.wanBytes < report.wanBytes, 'the way back sends less across sites')
  t.is(await status(dst.qmp), 'postmigrate')
  const dstImport = await ok(t, ['import', dst.ram, '--repo', scratch, '--json'])
  t.is(dstImport.root, received.root, 'identical RAM at the second switch-over')
  const lastAtDst = Math.max(...await dst.counters())
  const afterBack = await waitFor(async () => {
    const seen = await back.counters()
    return seen.length > 0 && Math.max(...seen) > lastAtDst + 5 ? seen : undefined
  }, { timeout: 60_000, interval: 200, message: 'the guest did not keep counting after coming back' })
  t.true(Math.min(...afterBack) >= lastAtDst)
})

/** The run state of a QEMU (QEMU serves one QMP client per socket: connect, ask, close). */
async function status (qmp: string): Promise<string> {
  const client = await QmpClient.connect(qmp)
  try {
    return (await client.execute('query-status')).status
  } finally {
    client.close()
  }
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise(resolve => server.close(resolve))
  return port
}
