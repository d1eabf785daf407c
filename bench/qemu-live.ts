/**
 * Live migration of a real QEMU guest, side by side (issue 16): QEMU's own pre-copy, multifd
 * (plain and zstd) and XBZRLE, on loopback, on a guest that keeps rewriting its memory
 * (bench/guest-dirty-initramfs.sh); and the cost of the soft-dirty tracker
 * (qemu/dirty-tracker.ts) next to hashing the whole RAM file. The memfabric method joins the
 * table in phase 2 (`METHODS`, `memfabric`).
 *
 * The methods run as a chain on one guest: boot once, migrate A→B with the first method, B→C
 * with the next... (the guest and its workload keep running; each hop is a fresh destination
 * QEMU started with `-incoming defer`). Downtime is measured from QMP event timestamps (both
 * QEMUs on this host, one clock): `STOP` at the source to `RESUME` at the destination; QEMU's
 * own `query-migrate` downtime is reported next to it. RAM files live in /dev/shm, allocated
 * up front (`prealloc=on`) so every page is present in QEMU's mapping.
 *
 *   node bench/qemu-live.ts [--ram 256M|1G] [--dirty 16] [--wss 64] [--only migrate|tracker] [--tag NAME]
 *
 * Results: bench/results/qemu-live-<tag or ram>.json; figures and findings: docs/bench-qemu-live.md.
 */
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createHash, randomInt } from 'node:crypto'
import { once } from 'node:events'
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { crc32 } from 'node:zlib'
import { DIRTY_PAGE_SIZE, openDirtyTracker, probeSoftDirty, qmpFreeze } from '../qemu/dirty-tracker.ts'
import { qemuPid } from '../qemu/qemu-pid.ts'
import { QmpClient } from '../qemu/qmp.ts'
import type { QmpEvent } from '../qemu/qmp.ts'
import { findKernel, guestArgs, QEMU } from '../test/fixtures/guest/qemu.ts'

const { values } = parseArgs({
  options: {
    ram: { type: 'string', default: '256M' },
    dirty: { type: 'string', default: '16' },
    wss: { type: 'string', default: '64' },
    only: { type: 'string' },
    tag: { type: 'string' }
  }
})
const ram = values.ram!
const ramBytes = Number(/^(\d+)[MG]$/.exec(ram)?.[1] ?? NaN) * (ram.endsWith('G') ? 1024 ** 3 : 1024 ** 2)
if (!Number.isFinite(ramBytes)) throw new Error(`--ram like 256M or 1G, got ${ram}`)
const BUILD = fileURLToPath(new URL('./guest-dirty-initramfs.sh', import.meta.url))

interface Method {
  name: string
  /** Capabilities on both sides, parameters on both sides; undefined: not run yet (phase 2). */
  caps?: string[]
  params?: Record<string, unknown>
}

/** Every method of the table; memfabric's slot is filled in phase 2. */
const METHODS: Method[] = [
  { name: 'qemu pre-copy', caps: [], params: {} },
  { name: 'qemu multifd', caps: ['multifd'], params: { 'multifd-channels': 2 } },
  { name: 'qemu multifd+zstd', caps: ['multifd'], params: { 'multifd-channels': 2, 'multifd-compression': 'zstd' } },
  { name: 'qemu xbzrle', caps: ['xbzrle'], params: { 'xbzrle-cache-size': Math.min(ramBytes / 4, 256 * 1024 ** 2) } },
  { name: 'memfabric' }
]
/** Applied to every QEMU method: QEMU's default downtime budget, and no bandwidth cap on loopback (7.2's default is 32 MiB/s). */
const COMMON_PARAMS = { 'downtime-limit': 300, 'max-bandwidth': 8 * 1024 ** 3 }

interface Vm {
  name: string
  ram: string
  qmpPath: string
  log: string
  child: ChildProcess
  qmp: QmpClient
}

const dir = await mkdtemp('/dev/shm/memfabric-bench-live-')
const vms = new Set<Vm>()
const kernel = await findKernel()
if (kernel === undefined) throw new Error('no /boot/vmlinuz-* kernel')
const initrd = join(dir, 'guest.cpio.gz')
await promisify(execFile)('sh', [BUILD, initrd])
const append = `console=ttyS0 quiet panic=-1 mf.dirty=${values.dirty} mf.wss=${values.wss}`

async function startVm (name: string, incoming: boolean): Promise<Vm> {
  const vm = { name, ram: join(dir, `${name}.ram`), qmpPath: join(dir, `${name}.qmp`), log: join(dir, `${name}.log`) }
  const args = [...guestArgs({ mem: ram, ram: vm.ram, log: vm.log, qmp: vm.qmpPath, kernel: kernel as string, initrd, append, prealloc: true }), ...(incoming ? ['-incoming', 'defer'] : [])]
  const child = spawn(QEMU, args, { stdio: ['ignore', 'ignore', 'inherit'] })
  const deadline = Date.now() + 60_000
  while (await stat(vm.qmpPath).then(() => false, () => true)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`${name}: QEMU did not open its QMP socket`)
    await sleep(50)
  }
  const full: Vm = { ...vm, child, qmp: await QmpClient.connect(vm.qmpPath, { commandTimeout: 120_000 }) }
  vms.add(full)
  return full
}

async function stopVm (vm: Vm): Promise<void> {
  vm.qmp.close()
  if (vm.child.exitCode === null && vm.child.signalCode === null) {
    const exited = once(vm.child, 'exit')
    vm.child.kill('SIGKILL')
    await exited
  }
  vms.delete(vm)
  await rm(vm.ram, { force: true })
}

async function ticks (vm: Vm): Promise<number> {
  const text = await readFile(vm.log, 'utf8').catch(() => '')
  return Math.max(0, ...[...text.matchAll(/^tick (\d+)\r?$/gm)].map(m => Number(m[1])))
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const eventMs = (e: QmpEvent): number => e.timestamp!.seconds * 1000 + e.timestamp!.microseconds / 1000
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  server.close()
  return port
}

interface MigrationResult {
  method: string
  downtimeMs: number
  qemuDowntimeMs: number
  totalMs: number
  qemuTotalMs: number
  setupMs: number
  transferredBytes: number
  dirtySyncs: number
  dirtyPagesRate: number
  ticksBefore: number
  ticksAfter: number
  extra: Record<string, unknown>
}

async function migrate (src: Vm, method: Method, hop: number): Promise<[MigrationResult, Vm]> {
  const dst = await startVm(`vm${hop}`, true)
  for (const vm of [src, dst]) {
    // undo the previous hop's capabilities on the source (they stay set on a QEMU)
    await vm.qmp.execute('migrate-set-capabilities', { capabilities: ['multifd', 'xbzrle'].map(capability => ({ capability, state: method.caps?.includes(capability) === true })) })
    await vm.qmp.execute('migrate-set-parameters', { ...COMMON_PARAMS, 'multifd-compression': 'none', ...method.params })
  }
  const port = await freePort()
  await dst.qmp.execute('migrate-incoming', { uri: `tcp:127.0.0.1:${port}` })
  const ticksBefore = await ticks(src)
  const started = Date.now()
  await src.qmp.execute('migrate', { uri: `tcp:127.0.0.1:${port}` })
  let info: any
  while (true) {
    info = await src.qmp.execute('query-migrate')
    if (info.status === 'completed') break
    if (info.status === 'failed' || info.status === 'cancelled') throw new Error(`${method.name}: migration ${info.status}: ${info['error-desc'] ?? ''}`)
    if (Date.now() - started > 600_000) throw new Error(`${method.name}: did not converge in 10 minutes`)
    await sleep(20)
  }
  const resumed = await dst.qmp.waitEvent(e => e.event === 'RESUME', { timeout: 60_000 })
  const done = Date.now()
  const stopped = src.qmp.received().findLast(e => e.event === 'STOP')
  if (stopped == null) throw new Error(`${method.name}: no STOP event from the source`)
  // the guest keeps running at the destination
  const deadline = Date.now() + 60_000
  while (await ticks(dst) < 3 && Date.now() < deadline) await sleep(200)
  const ticksAfter = await ticks(dst)
  const result: MigrationResult = {
    method: method.name,
    downtimeMs: eventMs(resumed) - eventMs(stopped),
    qemuDowntimeMs: info.downtime,
    totalMs: done - started,
    qemuTotalMs: info['total-time'],
    setupMs: info['setup-time'],
    transferredBytes: info.ram?.transferred,
    dirtySyncs: info.ram?.['dirty-sync-count'],
    dirtyPagesRate: info.ram?.['dirty-pages-rate'],
    ticksBefore,
    ticksAfter,
    extra: { ram: info.ram, xbzrle: info['xbzrle-cache'], compression: info.compression }
  }
  await stopVm(src)
  return [result, dst]
}

async function time<T> (fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now()
  const v = await fn()
  return [performance.now() - t0, v]
}

/** The tracker's round cost next to hashing the whole RAM file. */
async function trackerCost (vm: Vm): Promise<Record<string, unknown>> {
  const pid = await qemuPid(vm.qmpPath)
  const support = await probeSoftDirty()
  const opened = await openDirtyTracker({ pid, file: vm.ram, probe: false })
  if (!opened.ok) throw new Error(opened.reason)
  const dt = opened.tracker
  const size = (await stat(vm.ram)).size
  const pages = size / DIRTY_PAGE_SIZE
  const runs = 5
  const clearDirty: number[] = []
  const collectFrozen: number[] = []
  const walk: number[] = []
  let dirty = 0
  for (let i = 0; i < runs; i++) {
    clearDirty.push((await time(async () => { await dt.clear(); dirty = (await dt.dirty()).length }))[0])
    collectFrozen.push((await time(async () => await dt.collect(qmpFreeze(vm.qmp))))[0])
    // clear_refs mode 1 walks the same page tables as mode 4 (which is a no-op on a kernel
    // without soft-dirty): a stand-in for the walk's cost. It only ages accessed bits.
    walk.push((await time(async () => { await writeFile(`/proc/${pid}/clear_refs`, '1') }))[0])
    await sleep(200)
  }
  const stats = dt.stats
  await dt.close()
  const fh = await open(vm.ram, 'r')
  const chunk = Buffer.allocUnsafeSlow(8 * 1024 * 1024)
  const readAll = async (each: (b: Buffer) => void): Promise<void> => {
    for (let at = 0; at < size; at += chunk.length) {
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, at)
      each(chunk.subarray(0, bytesRead))
    }
  }
  const [streamMs] = await time(async () => { const h = createHash('sha256'); await readAll(b => h.update(b)); h.digest() })
  const [perPageMs] = await time(async () => readAll(b => { for (let p = 0; p < b.length; p += DIRTY_PAGE_SIZE) createHash('sha256').update(b.subarray(p, p + DIRTY_PAGE_SIZE)).digest() }))
  const [crcMs] = await time(async () => readAll(b => { for (let p = 0; p < b.length; p += DIRTY_PAGE_SIZE) crc32(b.subarray(p, p + DIRTY_PAGE_SIZE)) }))
  // a round with 1 % of its pages dirty: read and hash those pages only (scattered)
  const sample = Array.from({ length: Math.round(pages / 100) }, () => randomInt(pages)).sort((a, b) => a - b)
  const page = Buffer.allocUnsafeSlow(DIRTY_PAGE_SIZE)
  const [onePercentMs] = await time(async () => {
    for (const s of sample) {
      await fh.read(page, 0, DIRTY_PAGE_SIZE, s * DIRTY_PAGE_SIZE)
      createHash('sha256').update(page).digest()
    }
  })
  await fh.close()
  return {
    softDirty: support.available ? 'available' : support.reason,
    ramBytes: size,
    pages,
    pagemapBytes: pages * 8,
    clearDirtyMs: median(clearDirty),
    collectFrozenMs: median(collectFrozen),
    clearRefsWalkMs: median(walk),
    dirtyPagesSeen: dirty,
    lastStats: stats,
    sha256StreamMs: streamMs,
    sha256PerPageMs: perPageMs,
    crc32PerPageMs: crcMs,
    hashOnePercentMs: onePercentMs
  }
}

async function cleanup (): Promise<void> {
  for (const vm of [...vms]) await stopVm(vm)
  await rm(dir, { recursive: true, force: true })
}
process.once('SIGINT', () => { void cleanup().finally(() => process.exit(130)) })

const result: Record<string, unknown> = {
  date: new Date().toISOString(),
  host: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg() },
  qemu: undefined,
  guest: { ram, dirtyMiBs: Number(values.dirty), wssMiB: Number(values.wss) }
}
try {
  let vm = await startVm('vm0', false)
  result.qemu = vm.qmp.version
  const deadline = Date.now() + 300_000
  while (await ticks(vm) < 5) {
    if (Date.now() > deadline) throw new Error('the guest did not boot and tick')
    await sleep(500)
  }
  console.log(`guest up (${ram}, rewriting ${values.dirty} MiB/s over ${values.wss} MiB)`)
  if (values.only !== 'migrate') {
    const cost = await trackerCost(vm)
    result.tracker = cost
    console.log('tracker cost', cost)
  }
  if (values.only !== 'tracker') {
    const rows: MigrationResult[] = []
    let hop = 1
    for (const method of METHODS) {
      if (method.caps === undefined) {
        console.log(`${method.name}: phase 2 (not measured yet)`)
        continue
      }
      const [row, next] = await migrate(vm, method, hop++)
      vm = next
      rows.push(row)
      console.log(`${row.method}: downtime ${row.downtimeMs.toFixed(0)} ms (QEMU says ${row.qemuDowntimeMs} ms), total ${row.totalMs} ms (QEMU ${row.qemuTotalMs} ms), ${(row.transferredBytes / 1024 ** 2).toFixed(1)} MiB, ${row.dirtySyncs} dirty syncs, ticks ${row.ticksBefore} → ${row.ticksAfter}`)
    }
    result.migrations = rows
    console.log('\n| method | downtime (events) | downtime (QEMU) | total | QEMU total-time | transferred | dirty syncs |\n| --- | --- | --- | --- | --- | --- | --- |')
    for (const r of rows) console.log(`| ${r.method} | ${r.downtimeMs.toFixed(0)} ms | ${r.qemuDowntimeMs} ms | ${(r.totalMs / 1000).toFixed(2)} s | ${(r.qemuTotalMs / 1000).toFixed(2)} s | ${(r.transferredBytes / 1024 ** 2).toFixed(1)} MiB | ${r.dirtySyncs} |`)
    console.log('| memfabric | phase 2 | | | | | |')
  }
  await mkdir(new URL('results/', import.meta.url), { recursive: true })
  const name = `qemu-live-${values.tag ?? ram}${values.only !== undefined ? `-${values.only}` : ''}.json`
  await writeFile(new URL(`results/${name}`, import.meta.url), JSON.stringify(result, null, 2) + '\n')
  console.log(`results: bench/results/${name}`)
} finally {
  await cleanup()
}
