/**
 * Memory of a destination daemon while it pulls a large image (issue 4: RSS < 300 MB while
 * migrating 4 GiB). Two sites, one host each, real daemon processes behind the WAN emulator;
 * the destination's RSS is sampled from /proc during the migration and its VmHWM read at
 * the end.
 *
 * The daemons run with a small preload (`--import`, through NODE_OPTIONS; written into the
 * testnet directory) that logs every 200 ms, from the main thread, the main isolate's
 * `process.memoryUsage()` and V8 heap spaces and each worker thread's heap; near the
 * destination's RSS peak (within 20 MB) the bench also splits its mappings (/proc/PID/smaps)
 * into V8 heap pages, malloc arenas, large mallocs and file-backed maps. Findings and figures:
 * docs/bench-migrate-memory.md.
 *
 *   node bench/migrate-memory.ts [--size 4GiB] [--wan-mbit 1000]
 *     [--node-options '--max-old-space-size=160']   extra NODE_OPTIONS for the daemons
 *     [--env MALLOC_ARENA_MAX=2]                    extra environment of the daemons (repeat)
 *     [--snapshot-at 400]                           heap snapshot of the destination once its RSS passes N MB
 *     [--tag NAME]                                  results go to results/migrate-memory-NAME.json, docs untouched
 *     [--keep]                                      keep the testnet directory (daemon logs: <node>.log)
 */
import { readFile, writeFile, mkdir, mkdtemp, readdir } from 'node:fs/promises'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Testnet, childEnv } from '../testnet/testnet.ts'
import { writeImage } from '../testnet/synthetic.ts'

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '4GiB' },
    'wan-mbit': { type: 'string', default: '1000' },
    'node-options': { type: 'string', default: '' },
    env: { type: 'string', multiple: true, default: [] },
    'snapshot-at': { type: 'string' },
    tag: { type: 'string' },
    keep: { type: 'boolean', default: false }
  }
})
const units: Record<string, number> = { KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }
const match = /^(\d+)(KiB|MiB|GiB)$/.exec(values.size!)
if (match == null) throw new Error(`--size like 4GiB, got ${values.size}`)
const size = Number(match[1]) * units[match[2]]
const snapshotAt = values['snapshot-at'] != null ? Number(values['snapshot-at']) * 1e6 : undefined

/**
 * The preload each daemon runs: one JSON line per 200 ms to $MF_MEM_LOG with the main
 * isolate's memoryUsage and heap spaces and every live worker's heap (workers are found by
 * wrapping the Worker constructor; a preload does not run inside workers).
 */
const SAMPLER = `
import { appendFileSync } from 'node:fs'
import { createRequire, syncBuiltinESMExports } from 'node:module'
import v8 from 'node:v8'
const require = createRequire(import.meta.url)
const wt = require('node:worker_threads')
// preloads also run in workers started from a file: only the main thread samples
const out = wt.isMainThread ? process.env.MF_MEM_LOG : undefined
const workers = new Set()
const Original = wt.Worker
wt.Worker = class extends Original {
  constructor (...args) {
    super(...args)
    workers.add(this)
    this.once('exit', () => workers.delete(this))
  }
}
syncBuiltinESMExports()
if (out) {
  const timer = setInterval(async () => {
    const m = process.memoryUsage()
    const spaces = {}
    for (const s of v8.getHeapSpaceStatistics()) spaces[s.space_name] = { size: s.space_size, used: s.space_used_size, physical: s.physical_space_size }
    const h = v8.getHeapStatistics()
    const w = []
    for (const worker of workers) {
      try {
        const s = await worker.getHeapStatistics()
        w.push({ total: s.total_heap_size, used: s.used_heap_size, physical: s.total_physical_size, external: s.external_memory, malloced: s.malloced_memory })
      } catch {}
    }
    appendFileSync(out, JSON.stringify({ pid: process.pid, t: Date.now(), rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, physical: h.total_physical_size, malloced: h.malloced_memory, spaces, workers: w }) + '\\n')
  }, 200)
  timer.unref()
}
`

interface Sample {
  pid: number
  t: number
  rss: number
  heapTotal: number
  heapUsed: number
  external: number
  arrayBuffers: number
  physical: number
  malloced: number
  spaces: Record<string, { size: number, used: number, physical: number }>
  workers: Array<{ total: number, used: number, physical: number, external: number, malloced: number }>
}

async function memory (pid: number): Promise<{ rss: number, hwm: number, anon: number, file: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024
  return { rss: kib('VmRSS'), hwm: kib('VmHWM'), anon: kib('RssAnon'), file: kib('RssFile') }
}

/**
 * Resident bytes of a process by kind of mapping: file-backed (the node binary, LevelDB's
 * mmapped tables of the page index and of the provider records, libraries),
 * [heap] (the main malloc arena), anonymous mappings by size: 64 MiB-reserved ones are glibc
 * thread arenas, 256 KiB..1 MiB ones V8 heap pages (a page is 256 KiB), larger ones large
 * mallocs (Buffers, SharedArrayBuffers) and V8 large objects.
 */
async function mappings (pid: number): Promise<Record<string, number>> {
  const text = await readFile(`/proc/${pid}/smaps`, 'utf8')
  const out: Record<string, number> = {}
  let kind = ''
  let prevEnd = -1n
  let prevKind = ''
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line)
    if (head != null) {
      const start = BigInt('0x' + head[1])
      const end = BigInt('0x' + head[2])
      const bytes = Number(end - start)
      const path = head[4]
      if (path.endsWith('.ldb') && path.includes('/index/')) kind = 'file: page index tables (.ldb)'
      else if (path.endsWith('.ldb') && path.includes('/providers/')) kind = 'file: provider record tables (.ldb)'
      else if (path.startsWith('/')) kind = path.includes('/node') ? 'file: node binary' : 'file: other'
      else if (path === '[heap]') kind = 'malloc: main arena ([heap])'
      else if (path.startsWith('[stack')) kind = 'stacks'
      else if (path !== '') kind = 'other ' + path
      // glibc arenas reserve 64 MiB (a rw part then a ---p remainder)
      else if (start % (64n << 20n) === 0n && bytes <= 64 << 20) kind = 'malloc: thread arenas'
      else if (start === prevEnd && prevKind === 'malloc: thread arenas') kind = 'malloc: thread arenas'
      else if (bytes >= 1 << 20) kind = 'anon >= 1 MiB (large mallocs: Buffers, SharedArrayBuffers; V8 large objects)'
      else if (bytes >= 256 << 10) kind = 'anon 256 KiB..1 MiB (V8 heap pages)'
      else kind = 'anon < 256 KiB'
      prevEnd = end
      prevKind = kind
      continue
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line)
    if (rss != null) out[kind] = (out[kind] ?? 0) + Number(rss[1]) * 1024
  }
  return out
}

/** CPU seconds a process has used (all threads), user and system: less load-sensitive than wall time. */
async function cpuSeconds (pid: number): Promise<{ user: number, system: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // utime and stime are fields 14 and 15 (1-based) of the whole line, in clock ticks (100 Hz on Linux)
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 }
}

async function readSamples (path: string): Promise<Sample[]> {
  try {
    return (await readFile(path, 'utf8')).split('\n').filter(l => l !== '').map(l => JSON.parse(l))
  } catch {
    return []
  }
}

const dir = await mkdtemp(join(tmpdir(), 'memfabric-migrate-memory-'))
const preload = join(dir, 'mem-sampler.mjs')
await writeFile(preload, SAMPLER)
const extraEnv = Object.fromEntries(values.env!.map(kv => { const i = kv.indexOf('='); return [kv.slice(0, i), kv.slice(i + 1)] }))
const nodeOptions = [`--import=${preload}`, values['node-options']!, snapshotAt != null ? `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${dir}` : ''].filter(s => s !== '').join(' ')
// both daemons log to one file; each line carries its pid
const env = { ...childEnv(), ...extraEnv, NODE_OPTIONS: nodeOptions, MF_MEM_LOG: join(dir, 'mem.jsonl') }

const net = await Testnet.create({ sites: 2, hosts: 1, wanMbit: Number(values['wan-mbit']), wanRttMs: 40, dir, removeDir: snapshotAt == null && values.keep !== true, env })
try {
  const [source] = net.site(1)
  const [destination] = net.site(2)
  const image = join(net.dir, 'vm.ram')
  console.log(`generating a ${values.size} synthetic image`)
  await writeImage(image, { sizeBytes: size, seed: 42 })
  console.log('importing on the source')
  const imported = await source.api.importImage(image, { name: 'vm' })
  const before = await memory(destination.pid)
  const cpuBefore = await cpuSeconds(destination.pid)
  let peak = before
  let peakMaps: Record<string, number> = {}
  let lastMaps = 0
  let mapsRss = 0
  let snapshotTaken = false
  let snapshotRss = 0
  const t0 = performance.now()
  const sampler = setInterval(() => {
    memory(destination.pid).then(async m => {
      if (m.rss > peak.rss) {
        peak = m
        // smaps of a peak, at most once a second unless RSS rose 20 MB (reading it costs the daemon a little)
        if (performance.now() - lastMaps > 1000 || m.rss > mapsRss + 20e6) {
          lastMaps = performance.now()
          mapsRss = m.rss
          peakMaps = await mappings(destination.pid)
        }
      }
      if (snapshotAt != null && !snapshotTaken && m.rss >= snapshotAt) {
        snapshotTaken = true
        snapshotRss = m.rss
        console.log(`destination RSS ${(m.rss / 1e6).toFixed(0)} MB: heap snapshot (SIGUSR2)`)
        process.kill(destination.pid, 'SIGUSR2')
      }
    }).catch(() => {})
  }, 200)
  console.log('migrating')
  const started = performance.now()
  // when the destination enters each phase (manifest, pages, export, done), s since t0
  const phases: Record<string, number> = {}
  const report = await source.api.migrate('vm', destination.peerId, {
    out: 'vm.ram',
    onProgress: (p: any) => { if (typeof p?.phase === 'string') phases[p.phase] ??= (performance.now() - t0) / 1000 }
  })
  const seconds = (performance.now() - started) / 1000
  clearInterval(sampler)
  const after = await memory(destination.pid)
  const cpuAfter = await cpuSeconds(destination.pid)
  const cpu = { user: cpuAfter.user - cpuBefore.user, system: cpuAfter.system - cpuBefore.system }
  const afterMaps = await mappings(destination.pid)
  const sourceMemory = await memory(source.pid)

  const wall0 = Date.now() - (performance.now() - t0)
  const mb1 = (n: number | undefined): number => Math.round((n ?? 0) / 1e5) / 10
  // the destination's lines: all of them for the series (import on the source included: the
  // destination stores provider records meanwhile), those of the migration for the figures
  const lines = (await readSamples(join(dir, 'mem.jsonl'))).filter(s => s.pid === destination.pid)
  const dest = lines.filter(s => s.t >= wall0)
  const top = dest.reduce<Sample | undefined>((a, s) => (a == null || s.rss > a.rss ? s : a), undefined)
  const maxOf = (pick: (s: Sample) => number): number => dest.reduce((a, s) => Math.max(a, pick(s)), 0)
  const workersHeap = (s: Sample): number => s.workers.reduce((a, w) => a + w.physical, 0)
  const snapshots = snapshotAt != null ? (await readdir(dir)).filter(f => f.endsWith('.heapsnapshot')).map(f => join(dir, f)) : []

  const result = {
    date: new Date().toISOString(),
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, memory: totalmem(), node: process.version, loadavg: loadavg() },
    size,
    nodeOptions: values['node-options'],
    env: extraEnv,
    pages: imported.pages,
    zeroPages: imported.zeroPages,
    seconds,
    throughputMBps: size / seconds / 1e6,
    destination: {
      cpuSeconds: cpu,
      rssBefore: before.rss,
      peakRss: peak.rss,
      vmHWM: after.hwm,
      rssAfter: after.rss,
      peakRssAnon: peak.anon,
      peakRssFile: peak.file,
      mappingsAtPeak: peakMaps,
      mappingsAfter: afterMaps,
      atPeak: top,
      maxima: {
        heapTotal: maxOf(s => s.heapTotal),
        heapUsed: maxOf(s => s.heapUsed),
        oldSpace: maxOf(s => s.spaces.old_space?.physical ?? 0),
        newSpace: maxOf(s => s.spaces.new_space?.physical ?? 0),
        external: maxOf(s => s.external),
        arrayBuffers: maxOf(s => s.arrayBuffers),
        workersHeap: maxOf(workersHeap)
      },
      phases,
      samples: dest.length,
      // one point a second, s from the start of the migration (negative: before it): RSS and the sampler's breakdown (MB)
      series: lines.filter((_, i) => i % 5 === 0).map(s => ({
        s: Math.round((s.t - wall0) / 100) / 10,
        rss: mb1(s.rss),
        heap: mb1(s.heapTotal),
        old: mb1(s.spaces.old_space?.physical),
        new: mb1(s.spaces.new_space?.physical),
        large: mb1(s.spaces.large_object_space?.physical),
        external: mb1(s.external),
        arrayBuffers: mb1(s.arrayBuffers),
        workers: mb1(workersHeap(s))
      }))
    },
    source: { vmHWM: sourceMemory.hwm },
    snapshot: snapshotAt != null ? { atRss: snapshotRss, files: snapshots } : undefined,
    tiers: report.tiers,
    wanBytes: report.wanBytes
  }
  const mb = (n: number | undefined): string => ((n ?? 0) / 1e6).toFixed(0)
  console.log(`migrated ${values.size} in ${seconds.toFixed(1)} s (destination CPU ${cpu.user.toFixed(1)} s user + ${cpu.system.toFixed(1)} s system); destination RSS before ${mb(before.rss)} MB, peak ${mb(peak.rss)} MB (VmHWM ${mb(after.hwm)} MB, after ${mb(after.rss)} MB), source VmHWM ${mb(sourceMemory.hwm)} MB`)
  if (top != null) {
    console.log(`at the peak sample (rss ${mb(top.rss)} MB): heap total ${mb(top.heapTotal)} used ${mb(top.heapUsed)} (old ${mb(top.spaces.old_space?.physical)}, new ${mb(top.spaces.new_space?.physical)}, code ${mb(top.spaces.code_space?.physical)}, large ${mb(top.spaces.large_object_space?.physical)}), external ${mb(top.external)} (arrayBuffers ${mb(top.arrayBuffers)}), workers ${top.workers.length} heap ${mb(workersHeap(top))} MB`)
  }
  console.log('maxima over the run (MB):', Object.fromEntries(Object.entries(result.destination.maxima).map(([k, v]) => [k, Math.round(v / 1e6)])))
  console.log('mappings at peak (MB):', Object.fromEntries(Object.entries(peakMaps).map(([k, v]) => [k, Math.round(v / 1e6)])))
  console.log('mappings after (MB):', Object.fromEntries(Object.entries(afterMaps).map(([k, v]) => [k, Math.round(v / 1e6)])))
  if (snapshots.length > 0) console.log('heap snapshots:', snapshots.join(' '))
  await mkdir(new URL('results/', import.meta.url), { recursive: true })
  const name = values.tag != null ? `migrate-memory-${values.tag}.json` : 'migrate-memory.json'
  await writeFile(new URL(`results/${name}`, import.meta.url), JSON.stringify(result, null, 2) + '\n')
} finally {
  await net.stop()
}
