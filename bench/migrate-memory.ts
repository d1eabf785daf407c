/**
 * Memory of a destination daemon while it pulls a large image (issue 4: RSS < 300 MB while
 * migrating 4 GiB). Two sites, one host each, real daemon processes behind the WAN emulator;
 * the destination's RSS is sampled from /proc during the migration and its VmHWM read at
 * the end.
 *
 *   node bench/migrate-memory.ts [--size 4GiB] [--wan-mbit 1000]
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises'
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Testnet } from '../testnet/testnet.ts'
import { writeImage } from '../testnet/synthetic.ts'

const { values } = parseArgs({ options: { size: { type: 'string', default: '4GiB' }, 'wan-mbit': { type: 'string', default: '1000' } } })
const units: Record<string, number> = { KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }
const match = /^(\d+)(KiB|MiB|GiB)$/.exec(values.size!)
if (match == null) throw new Error(`--size like 4GiB, got ${values.size}`)
const size = Number(match[1]) * units[match[2]]

async function memory (pid: number): Promise<{ rss: number, hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') }
}

const net = await Testnet.create({ sites: 2, hosts: 1, wanMbit: Number(values['wan-mbit']), wanRttMs: 40 })
try {
  const [source] = net.site(1)
  const [destination] = net.site(2)
  const image = join(net.dir, 'vm.ram')
  console.log(`generating a ${values.size} synthetic image`)
  await writeImage(image, { sizeBytes: size, seed: 42 })
  console.log('importing on the source')
  const imported = await source.api.importImage(image, { name: 'vm' })
  const before = await memory(destination.pid)
  let peak = before.rss
  const sampler = setInterval(() => {
    memory(destination.pid).then(m => { peak = Math.max(peak, m.rss) }).catch(() => {})
  }, 200)
  console.log('migrating')
  const started = performance.now()
  const report = await source.api.migrate('vm', destination.peerId, { out: 'vm.ram' })
  const seconds = (performance.now() - started) / 1000
  clearInterval(sampler)
  const after = await memory(destination.pid)
  const sourceMemory = await memory(source.pid)
  const result = {
    date: new Date().toISOString(),
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, memory: totalmem(), node: process.version, loadavg: loadavg() },
    size,
    pages: imported.pages,
    zeroPages: imported.zeroPages,
    seconds,
    throughputMBps: size / seconds / 1e6,
    destination: { rssBefore: before.rss, peakRss: peak, vmHWM: after.hwm },
    source: { vmHWM: sourceMemory.hwm },
    tiers: report.tiers,
    wanBytes: report.wanBytes
  }
  const mb = (n: number): string => (n / 1e6).toFixed(0)
  console.log(`migrated ${values.size} in ${seconds.toFixed(1)} s; destination RSS peak ${mb(peak)} MB (VmHWM ${mb(after.hwm)} MB), source VmHWM ${mb(sourceMemory.hwm)} MB`)
  await mkdir(new URL('results/', import.meta.url), { recursive: true })
  await writeFile(new URL('results/migrate-memory.json', import.meta.url), JSON.stringify(result, null, 2) + '\n')
  await writeFile(new URL('../docs/bench-migrate-memory.md', import.meta.url), `# Daemon memory during a large migration

\`node bench/migrate-memory.ts --size ${values.size}\`: two sites with one daemon process each behind the
user-space WAN emulator (40 ms RTT, ${values['wan-mbit']} Mbit/s); a ${values.size} synthetic image
(${imported.pages.toLocaleString('en')} pages, ${imported.zeroPages.toLocaleString('en')} zero) is imported on the source and
migrated to the destination, which writes the memory file. The destination's RSS is sampled
every 200 ms from /proc; VmHWM is the kernel's high-water mark for the whole process life.

Machine: ${cpus().length} cores (${cpus()[0]?.model}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version};
load average at the end ${loadavg().map(l => l.toFixed(1)).join(' ')}. Date: ${result.date}.

| | figure |
| --- | ---: |
| destination RSS before | ${mb(before.rss)} MB |
| destination RSS peak during the migration | **${mb(peak)} MB** |
| destination VmHWM | ${mb(after.hwm)} MB |
| source VmHWM (includes the import) | ${mb(sourceMemory.hwm)} MB |
| time | ${seconds.toFixed(1)} s (${result.throughputMBps.toFixed(0)} MB/s of image) |

Target (issue 4): the daemon's RSS stays under 300 MB while migrating a 4 GiB image.
Raw figures: \`bench/results/migrate-memory.json\`.
`)
} finally {
  await net.stop()
}
