import test from 'ava'
import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { cli, ok, tempDir } from './cli-helpers.ts'
import { startDaemon } from '../fixtures/daemon.ts'
import { waitFor } from '../fixtures/wait.ts'
import { buildInitramfs, findKernel, guestMissing, startGuest } from '../fixtures/guest/qemu.ts'
import { QmpClient } from '../../qemu/index.ts'

const missing = await guestMissing()
const qemuTest = missing === undefined ? test.serial : test.skip
if (missing !== undefined) console.warn(`skipping the QEMU migration test: ${missing}`)

qemuTest('a running QEMU guest migrates live through the fabric to another site and keeps counting', async t => {
  t.timeout(600_000)
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
  t.true(report.resumed)
  t.true(report.rounds >= 2, 'pre-copy rounds and a final round')
  t.true(report.downtimeMs > 0)
  t.true(report.wanBytes > 0)
  t.true(report.tiers.source.pages + report.tiers.remote.pages > 0)
  t.is(report.verifiedRoot, report.root, 'the destination RAM re-hashes to the migrated root')
  t.is(report.ram, src.ram)
  t.is(report.destRam, dst.ram)
  await t.throwsAsync(access(join(b, 'out', 'src.ram.qemu-staging')), undefined, 'the staging file is removed')

  // the source has been stopped since the switch-over: its RAM file is still the switch-over RAM
  const srcQmp = await QmpClient.connect(src.qmp)
  t.teardown(() => { srcQmp.close() })
  t.is((await srcQmp.execute('query-status')).status, 'postmigrate')
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
  const dstQmp = await QmpClient.connect(dst.qmp)
  t.teardown(() => { dstQmp.close() })
  t.is((await dstQmp.execute('query-status')).status, 'running')
})
