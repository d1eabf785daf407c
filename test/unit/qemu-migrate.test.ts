import test from 'ava'
import type { ExecutionContext } from 'ava'
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { migrateQemu } from '../../qemu/index.ts'
import type { MigrationSummary } from '../../node/api/index.ts'
import { fakeQmp } from '../fixtures/guest/fake-qmp.ts'

const PAGE = 4096

interface FakeVm {
  qmp: string
  /** Commands received, in order. */
  log: string[]
  status: string
}

/** A fake QEMU: a shared memory-backend-file at `ram`, run state, migration that completes. */
async function fakeVm (t: ExecutionContext, ram: string, status: string, options: { share?: boolean, onMigrate?(): void, listening?: boolean } = {}): Promise<FakeVm> {
  const vm: FakeVm = { qmp: '', log: [], status }
  vm.qmp = await fakeQmp(t, (command, args) => {
    vm.log.push(command)
    switch (command) {
      case 'qom-list': return { return: [{ name: 'mem', type: 'child<memory-backend-file>' }, { name: 'other', type: 'child<foo>' }] }
      case 'qom-get': return { return: args.property === 'mem-path' ? ram : (options.share ?? true) }
      case 'query-status': return { return: { status: vm.status, running: vm.status === 'running' } }
      case 'stop': vm.status = 'paused'; return { return: {} }
      case 'cont': vm.status = 'running'; return { return: {} }
      case 'migrate-set-capabilities': return { return: {} }
      case 'migrate-incoming': return options.listening === true ? { error: { class: 'GenericError', desc: 'The incoming migration has already been started' } } : { return: {} }
      case 'migrate': vm.status = 'postmigrate'; options.onMigrate?.(); return { return: {} }
      case 'migrate_cancel': return { return: {} }
      case 'query-migrate':
        if (vm.status === 'inmigrate') return { return: { 'socket-address': [{ type: 'inet', host: '127.0.0.1', port: '4567' }] } }
        return { return: { status: 'completed', ram: { transferred: 1234 } } }
      default: return { error: { class: 'CommandNotFound', desc: command } }
    }
  })
  return vm
}

function summary (root: string): MigrationSummary {
  const tier = { pages: 1, bytes: PAGE, wireBytes: 100 }
  return {
    root, size: 4 * PAGE, pages: 4, zeroPages: 1, distinctPages: 3,
    tiers: { local: tier, site: tier, remote: tier, source: tier },
    manifest: { blocks: 1, fetched: 1, wireBytes: 50 }, wanBytes: 200, droppedHolders: [],
    durationMs: 1, throughput: 1, rounds: 1
  }
}

async function setup (t: ExecutionContext, verifiedRoot: string, dstOptions: { listening?: boolean } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-qemu-unit-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const srcRam = join(dir, 'src.ram')
  const dstRam = join(dir, 'dst.ram')
  const destRepo = join(dir, 'dst-repo')
  await mkdir(join(destRepo, 'out'), { recursive: true })
  const bytes = Buffer.alloc(4 * PAGE, 7)
  await writeFile(srcRam, bytes)
  await writeFile(dstRam, Buffer.alloc(4 * PAGE))
  const dst = await fakeVm(t, dstRam, 'inmigrate', dstOptions)
  // the destination has loaded the device state once the source sent it
  const src = await fakeVm(t, srcRam, 'running', { onMigrate: () => { dst.status = 'paused' } })
  const calls: string[] = []
  const source = {
    online: true,
    migrate: async (ref: string, to: string, options: any): Promise<MigrationSummary> => {
      calls.push(`migrate ${ref} ${to} live=${options.live === true} out=${options.out}`)
      if (options.live === true) {
        // the daemon calls the caller's pause back before the final round
        await options.pause()
        calls.push(`paused: source ${src.status}`)
      }
      await copyFile(ref, join(destRepo, 'out', options.out))
      return summary('bafy-final')
    }
  }
  const destination = {
    importImage: async (path: string) => {
      calls.push(`verify ${path}: ${(await readFile(path)).equals(bytes) ? 'same bytes' : 'different bytes'}`)
      return { root: verifiedRoot, size: 4 * PAGE, pages: 4, zeroPages: 0, newPages: 0, format: 'raw' as const }
    }
  }
  return { dir, srcRam, dstRam, destRepo, src, dst, calls, source, destination }
}

test('live: pause hook stops the source, RAM installed and verified before the device state, destination resumed', async t => {
  const s = await setup(t, 'bafy-final')
  const report = await migrateQemu({
    source: s.source, destination: s.destination, destRepo: s.destRepo,
    sourceQmp: s.src.qmp, destQmp: s.dst.qmp, to: 'peer'
  }, { live: true, name: 'vm1' })
  t.deepEqual(s.calls, [
    `migrate ${s.srcRam} peer live=true out=vm1.qemu-staging`,
    'paused: source paused',
    `verify ${s.dstRam}: same bytes`
  ])
  t.is(report.root, 'bafy-final')
  t.is(report.verifiedRoot, 'bafy-final')
  t.is(report.resumedBy, 'here')
  t.is(report.installedPages, 4)
  t.is(report.deviceStateBytes, 1234)
  t.true(report.downtimeMs !== undefined && report.downtimeMs >= 0)
  t.is(report.wanBytes, 200)
  t.is(s.dst.status, 'running')
  t.is(s.src.status, 'postmigrate')
  // device state only after the RAM was verified; the destination listens on the port it reported
  t.true(s.src.log.indexOf('migrate') > s.src.log.indexOf('stop'))
  t.true(s.src.log.filter(c => c === 'migrate-set-capabilities').length === 1 && s.dst.log.includes('migrate-set-capabilities'))
  t.is(s.dst.log.at(-1), 'cont')
})

test('a destination RAM that does not hash to the migrated root is not resumed; the source is', async t => {
  const s = await setup(t, 'bafy-wrong')
  const err = await t.throwsAsync(migrateQemu({
    source: s.source, destination: s.destination, destRepo: s.destRepo,
    sourceQmp: s.src.qmp, destQmp: s.dst.qmp, to: 'peer'
  }, { live: false, name: 'vm1' }))
  t.is((err as any).code, 'ERR_RAM_VERIFICATION')
  t.false(s.src.log.includes('migrate'), 'no device state sent')
  t.false(s.dst.log.includes('cont'))
  t.is(s.src.status, 'running', 'the source guest was resumed')
})

test('share=off RAM and a destination not waiting for a migration are refused before anything stops', async t => {
  const s = await setup(t, 'bafy-final')
  const priv = await fakeVm(t, s.srcRam, 'running', { share: false })
  const err = await t.throwsAsync(migrateQemu({ source: s.source, destination: s.destination, destRepo: s.destRepo, sourceQmp: priv.qmp, destQmp: s.dst.qmp, to: 'peer' }))
  t.is((err as any).code, 'ERR_GUEST_RAM')
  t.regex((err as Error).message, /share=off/)
  const running = await fakeVm(t, s.dstRam, 'running')
  const err2 = await t.throwsAsync(migrateQemu({ source: s.source, destination: s.destination, destRepo: s.destRepo, sourceQmp: s.src.qmp, destQmp: running.qmp, to: 'peer' }))
  t.is((err2 as any).code, 'ERR_VM_STATE')
  t.false(s.src.log.includes('stop'))
  t.deepEqual(s.calls, [])
})

test('a destination left listening by an earlier failed attempt is reused', async t => {
  const s = await setup(t, 'bafy-final', { listening: true })
  const report = await migrateQemu({
    source: s.source, destination: s.destination, destRepo: s.destRepo,
    sourceQmp: s.src.qmp, destQmp: s.dst.qmp, to: 'peer'
  }, { live: false, name: 'vm1' })
  t.is(report.resumedBy, 'here')
  t.is(s.dst.status, 'running')
})
