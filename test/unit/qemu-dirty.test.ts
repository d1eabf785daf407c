import test from 'ava'
import type { ExecutionContext } from 'ava'
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { gunzipSync } from 'node:zlib'
import { DIRTY_PAGE_SIZE, findRamMappings, openDirtyTracker, probeSoftDirty } from '../../qemu/dirty-tracker.ts'
import type { DirtyTracker } from '../../qemu/dirty-tracker.ts'
import { qemuPid } from '../../qemu/qemu-pid.ts'
import { QmpClient } from '../../qemu/qmp.ts'
import { buildInitramfs, findKernel, guestPrerequisiteMissing, GUEST_RAM, QEMU, qemuMissing, startGuest } from '../fixtures/guest/qemu.ts'
import { waitFor } from '../fixtures/wait.ts'

const WRITER = fileURLToPath(new URL('../fixtures/guest/map-writer.py', import.meta.url))
const pythonMissing = await promisify(execFile)('python3', ['-c', 'import mmap']).then(() => undefined, () => 'python3 with mmap is not installed')
const writerTest = pythonMissing === undefined ? test.serial : test.skip
if (pythonMissing !== undefined) console.warn(`skipping the map-writer dirty tracking tests: ${pythonMissing}`)
const support = await probeSoftDirty()
const softDirtyTest = pythonMissing === undefined && support.available ? test.serial : test.skip
if (!support.available) console.warn(`skipping the soft-dirty write tests: ${support.reason}`)
const missingQemu = await qemuMissing()
const qemuTest = missingQemu === undefined ? test.serial : test.skip
if (missingQemu !== undefined) console.warn(`skipping the QEMU dirty tracking tests: ${missingQemu}`)

async function tempDir (t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-dirty-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

interface Writer {
  pid: number
  send(command: string): Promise<void>
}

/** map-writer.py over `file`: `specs` are "offset:length" in pages, `skip` pages left unfaulted. */
async function startWriter (t: ExecutionContext, file: string, pages: number, specs: string[], skip: number[] = []): Promise<Writer> {
  const child = spawn('python3', [WRITER, file, String(pages), ...specs], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, SKIP: skip.join(',') } })
  const exited = once(child, 'exit')
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGKILL')
    await exited
  })
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const next = async (): Promise<string> => {
    const { value, done } = await lines.next()
    if (done === true) throw new Error('map-writer exited')
    return value
  }
  t.is(await next(), 'ready')
  return {
    pid: child.pid as number,
    send: async (command) => {
      child.stdin.write(command + '\n')
      t.is(await next(), 'ok')
    }
  }
}

async function tracker (t: ExecutionContext, pid: number, file: string, probe = false): Promise<DirtyTracker> {
  const opened = await openDirtyTracker({ pid, file, probe })
  if (!opened.ok) throw new Error(opened.reason)
  t.teardown(async () => { await opened.tracker.close() })
  return opened.tracker
}

const list = (slots: Uint32Array): number[] => [...slots]

writerTest('finds every VMA of a file mapped shared at offsets, split or not', async t => {
  const file = join(await tempDir(t), 'ram')
  const w = await startWriter(t, file, 48, ['0:16', '32:8'])
  await w.send('split 0')
  const maps = await findRamMappings(w.pid, file)
  t.deepEqual(maps.map(m => [m.fileOffset / DIRTY_PAGE_SIZE, (m.end - m.start) / DIRTY_PAGE_SIZE]).sort((a, b) => a[0] - b[0]), [[0, 4], [4, 12], [32, 8]])
  t.true(maps.every(m => m.perms === 'rw-s'))
  await t.throwsAsync(findRamMappings(process.pid, file), { code: 'ERR_GUEST_RAM' }, 'a process that does not map the file')
})

writerTest('pages of the mapping that are not present count as dirty', async t => {
  const file = join(await tempDir(t), 'ram')
  const w = await startWriter(t, file, 48, ['0:16', '32:8'], [3, 9, 35])
  const dt = await tracker(t, w.pid, file)
  await dt.clear()
  t.deepEqual(list(await dt.dirty()), [3, 9, 35])
  t.is(dt.stats.notPresent, 3)
  t.is(dt.stats.pages, 24, 'only the mapped pages are read')
})

softDirtyTest('soft-dirty: after clear(), dirty() returns exactly the written pages (and the not-present ones)', async t => {
  const file = join(await tempDir(t), 'ram')
  const w = await startWriter(t, file, 48, ['0:16', '32:8'], [9, 35])
  const dt = await tracker(t, w.pid, file, true)
  await dt.clear()
  await w.send('w 1 5 14 33')
  t.deepEqual(list(await dt.dirty()), [1, 5, 9, 14, 33, 35])
  await dt.collect()
  t.deepEqual(list(await dt.dirty()), [9, 35], 'cleared')
  await w.send('split 0')
  await w.send('w 2 39 9')
  t.deepEqual(list(await dt.dirty()), [2, 9, 35, 39], 'across a VMA split; page 9 written is present and dirty')
})

test('the probe finds out whether the kernel sets soft-dirty bits', async t => {
  const config = await readFile('/proc/config.gz').then(b => gunzipSync(b).toString(), () => undefined)
  const configured = config === undefined ? undefined : /^CONFIG_MEM_SOFT_DIRTY=y$/m.test(config)
  t.log(`CONFIG_MEM_SOFT_DIRTY: ${configured ?? 'unknown'}; probe: ${support.available ? 'available' : support.reason}`)
  if (configured !== undefined) t.is(support.available, configured)
  if (!support.available) t.regex(support.reason, /CONFIG_MEM_SOFT_DIRTY|clear_refs/)
})

/** A procfs tree with one process `pid` mapping `file` at `start` (pages from file page `first`). */
async function fakeProc (dir: string, file: string, init: { pid: number, start: number, pages: number, first: number, perms?: string, vmflags?: string, entries: bigint[] }): Promise<string> {
  const st = await stat(file)
  const proc = join(dir, 'proc')
  const dev = `${(Math.floor(st.dev / 256) & 0xfff).toString(16).padStart(2, '0')}:${((st.dev & 0xff) | (Math.floor(st.dev / 4096) & 0xfff00)).toString(16).padStart(2, '0')}`
  const end = init.start + init.pages * DIRTY_PAGE_SIZE
  const range = `${init.start.toString(16)}-${end.toString(16)}`
  await mkdir(join(proc, String(init.pid)), { recursive: true })
  await writeFile(join(proc, String(init.pid), 'maps'),
    `00400000-00401000 r-xp 00000000 00:00 0 \n${range} ${init.perms ?? 'rw-s'} ${(init.first * DIRTY_PAGE_SIZE).toString(16).padStart(8, '0')} ${dev} ${st.ino}                    ${file}\n`)
  await writeFile(join(proc, String(init.pid), 'smaps'), `${range} rw-s 0 ${dev} ${st.ino} ${file}\nSize: 16 kB\nVmFlags: ${init.vmflags ?? 'rd wr sh mr mw me ms'}\n`)
  await writeFile(join(proc, String(init.pid), 'clear_refs'), '')
  await writePagemap(proc, init.pid, init.start, init.entries)
  return proc
}

async function writePagemap (proc: string, pid: number, start: number, entries: bigint[]): Promise<void> {
  const buf = Buffer.alloc(entries.length * 8)
  entries.forEach((e, i) => buf.writeBigUInt64LE(e, i * 8))
  const fh = await open(join(proc, String(pid), 'pagemap'), 'w')
  await fh.write(buf, 0, buf.length, start / DIRTY_PAGE_SIZE * 8)
  await fh.close()
}

const PRESENT = 1n << 63n
const SWAPPED = 1n << 62n
const SOFT_DIRTY = 1n << 55n

test('decodes pagemap entries: soft-dirty, not present, swapped, a PFN that changed', async t => {
  const dir = await tempDir(t)
  const file = join(dir, 'ram')
  await writeFile(file, Buffer.alloc(16 * DIRTY_PAGE_SIZE))
  const start = 0x10000000
  const entries = [PRESENT | SOFT_DIRTY | 7n, PRESENT | 8n, 0n, SWAPPED | 5n, SWAPPED | SOFT_DIRTY | 6n, PRESENT | (1n << 40n) | 9n]
  const proc = await fakeProc(dir, file, { pid: 42, start, pages: 6, first: 10, entries })
  const opened = await openDirtyTracker({ pid: 42, file, proc, probe: false })
  if (!opened.ok) return t.fail(opened.reason)
  const dt = opened.tracker
  t.false(dt.locked)
  t.deepEqual(list(await dt.dirty()), [10, 12, 14], 'file pages: the mapping starts at file page 10')
  t.deepEqual(dt.stats, { pages: 6, softDirty: 2, notPresent: 1, remapped: 0, dirty: 3 })
  await dt.clear()
  t.is(await readFile(join(proc, '42', 'clear_refs'), 'utf8'), '4')
  // page 1 moved to another physical page (reclaimed and read back: its soft-dirty bit is gone)
  await writePagemap(proc, 42, start, [PRESENT | 7n, PRESENT | 99n, PRESENT | 3n, SWAPPED | 5n, SWAPPED | 6n, PRESENT | (1n << 40n) | 9n])
  t.deepEqual(list(await dt.dirty()), [11])
  t.is(dt.stats.remapped, 1)
  await dt.close()
})

test('refuses what it cannot track: huge TLB pages, private mappings', async t => {
  const dir = await tempDir(t)
  const file = join(dir, 'ram')
  await writeFile(file, Buffer.alloc(4 * DIRTY_PAGE_SIZE))
  const huge = await fakeProc(join(dir, 'a'), file, { pid: 7, start: 0x20000000, pages: 4, first: 0, vmflags: 'rd wr sh mr mw me ms ht', entries: [] })
  const refused = await openDirtyTracker({ pid: 7, file, proc: huge, probe: false })
  t.false(refused.ok)
  if (!refused.ok) t.regex(refused.reason, /huge/)
  const priv = await fakeProc(join(dir, 'b'), file, { pid: 8, start: 0x20000000, pages: 4, first: 0, perms: 'rw-p', entries: [] })
  await t.throwsAsync(openDirtyTracker({ pid: 8, file, proc: priv, probe: false }), { code: 'ERR_GUEST_RAM', message: /private/ })
})

qemuTest('finds the PID of a QEMU from its QMP socket, bound by an absolute or a relative path', async t => {
  const dir = await tempDir(t)
  const child = spawn(QEMU, ['-machine', 'q35', '-m', '32M', '-S', '-display', 'none', '-nodefaults', '-no-user-config',
    '-object', 'memory-backend-file,id=mem,size=32M,mem-path=ram,share=on', '-machine', 'memory-backend=mem',
    '-qmp', 'unix:rel.qmp,server=on,wait=off', '-qmp', `unix:${join(dir, 'abs.qmp')},server=on,wait=off`], { cwd: dir, stdio: 'ignore' })
  const exited = once(child, 'exit')
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) { child.kill('SIGKILL'); await exited }
  })
  await waitFor(async () => await stat(join(dir, 'rel.qmp')).then(() => true, () => false) && await stat(join(dir, 'abs.qmp')).then(() => true, () => false), { timeout: 30_000, message: 'QEMU did not open its QMP sockets' })
  t.is(await qemuPid(join(dir, 'abs.qmp')), child.pid as number)
  t.is(await qemuPid(join(dir, 'rel.qmp')), child.pid as number)
  await t.throwsAsync(qemuPid(join(dir, 'ram')), { code: 'ERR_QMP_CONNECT', message: /not a unix socket/ })
  await t.throwsAsync(qemuPid(join(dir, 'none.qmp')), { code: 'ERR_QMP_CONNECT' })
  // the paused QEMU has touched almost none of its RAM: those pages are not present, so dirty
  const dt = await tracker(t, child.pid as number, join(dir, 'ram'))
  const slots = await dt.dirty()
  t.is(dt.stats.pages, 32 * 256)
  t.true(dt.stats.notPresent > 0 && dt.stats.notPresent <= slots.length)
})

qemuTest('tracks the RAM file of a running QEMU guest', async t => {
  t.timeout(300_000)
  const prerequisite = await guestPrerequisiteMissing()
  if (prerequisite !== undefined) throw new Error(`QEMU is installed but the test guest cannot be built: ${prerequisite}`)
  const dir = await tempDir(t)
  const guest = await startGuest(t, { dir, name: 'g', kernel: await findKernel() as string, initrd: await buildInitramfs(join(dir, 'guest.cpio.gz')) })
  await waitFor(async () => (await guest.counters()).length >= 5, { timeout: 180_000, interval: 200, message: 'the guest did not boot and count' })
  const pid = await qemuPid(guest.qmp)
  t.is(pid, guest.child.pid as number)
  const dt = await tracker(t, pid, guest.ram)
  const size = (await stat(guest.ram)).size
  t.is(dt.ranges().reduce((n, m) => n + m.end - m.start, 0), size, `QEMU maps the whole ${GUEST_RAM} RAM file`)
  const slots = await dt.dirty()
  t.is(dt.stats.pages, size / DIRTY_PAGE_SIZE)
  t.true(slots.every((s, i) => s < size / DIRTY_PAGE_SIZE && (i === 0 || s > slots[i - 1])), 'sorted slots of the file')
  if (!support.available) {
    t.log(`soft-dirty unavailable here, the write check is skipped: ${support.reason}`)
    return
  }
  // every page whose content changed while the guest ran is in the dirty set
  const qmp = await QmpClient.connect(guest.qmp)
  t.teardown(() => { qmp.close() })
  await qmp.execute('stop')
  const before = await pageDigests(guest.ram)
  await dt.collect() // the guest is stopped: no freeze needed
  await qmp.execute('cont')
  await waitFor(async () => (await guest.counters()).length >= 15, { timeout: 60_000, interval: 200 })
  await qmp.execute('stop')
  const dirty = new Set(await dt.dirty())
  const after = await pageDigests(guest.ram)
  const changed = before.flatMap((d, i) => d !== after[i] ? [i] : [])
  t.true(changed.length > 0, 'the counting guest wrote some pages')
  t.deepEqual(changed.filter(i => !dirty.has(i)), [], 'no changed page is missing from the dirty set')
})

async function pageDigests (file: string): Promise<string[]> {
  const data = await readFile(file)
  const out: string[] = []
  for (let at = 0; at < data.length; at += DIRTY_PAGE_SIZE) out.push(createHash('sha1').update(data.subarray(at, at + DIRTY_PAGE_SIZE)).digest('base64'))
  return out
}
