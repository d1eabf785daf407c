/**
 * Load benchmark on real daemons (one OS process each, tcp + noise + yamux on loopback, the
 * fabric key), reporting the daemons' peak RSS (`VmHWM` of /proc/PID/status):
 *
 * 1. N migrations into one host at once: a source daemon offers N distinct images to one
 *    destination daemon concurrently (the `migrate` RPC of the source's control API).
 * 2. P fabric members fetching one image from one daemon at once: `test/fixtures/load-peers.ts`
 *    processes, each running P/procs libp2p hosts that fetch every distinct page of the image
 *    over `/memfabric/pages/1.0.0` (verified on arrival, compared with the file).
 *
 * Usage: node bench/load.ts [--migrations 8] [--migration-mib 16] [--peers 64] [--procs 4]
 *        [--image-mib 64] [--rounds 1] [--no-docs]
 *        node bench/load.ts --render   (docs/bench-load.md from bench/results/load.json)
 * Writes bench/results/load.json and docs/bench-load.md. Reports figures; asserts nothing.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { HttpApiClient } from '../node/api/http-client.ts'
import { readApiToken } from '../node/api/token.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const BIN = join(ROOT, 'cli', 'bin.ts')
const LOAD_PEERS = join(ROOT, 'test', 'fixtures', 'load-peers.ts')
const MiB = 1024 * 1024
const PAGE = 4096

function arg (name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] != null ? process.argv[i + 1] : fallback
}

const opts = {
  migrations: Number(arg('migrations', '8')),
  migrationMib: Number(arg('migration-mib', '16')),
  peers: Number(arg('peers', '64')),
  procs: Number(arg('procs', '4')),
  imageMib: Number(arg('image-mib', '64')),
  rounds: Number(arg('rounds', '1')),
  docs: !process.argv.includes('--no-docs')
}

const children: ChildProcess[] = []
function killAll (): void {
  for (const c of children) { try { process.kill(-c.pid!, 'SIGKILL') } catch {} }
}
process.once('exit', killAll)
process.once('SIGINT', () => { killAll(); process.exit(130) })

function env (): NodeJS.ProcessEnv {
  const e = { ...process.env }
  delete e.MEMFABRIC_REPO
  delete e.DEBUG
  return e
}

async function run (args: string[]): Promise<string> {
  const child = spawn(process.execPath, [BIN, ...args], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { err += s })
  const code = await new Promise<number | null>(resolve => { child.once('close', resolve) })
  if (code !== 0) throw new Error(`memfabric ${args.join(' ')} exited ${code}: ${err}`)
  return out
}

async function daemon (repo: string, args: string[] = []): Promise<{ pid: number, api: string, addresses: string[], peerId: string }> {
  const child = spawn(process.execPath, [BIN, 'daemon', '--repo', repo, '--api-port', '0', '--json', ...args], { env: env(), stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  children.push(child)
  child.stderr!.resume()
  let out = ''
  return new Promise((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s
      try { const info = JSON.parse(out); resolve({ ...info, pid: child.pid! }) } catch {}
    })
    child.once('exit', code => { reject(new Error(`daemon exited ${code}`)) })
  })
}

async function status (pid: number): Promise<{ rss: number, hwm: number }> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? 0) * 1024
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
}

/** Random pages with a quarter zero pages (a VM-like image that does not compress). */
function image (mib: number): Buffer {
  const bytes = randomBytes(mib * MiB)
  for (let off = 0; off < bytes.byteLength; off += 4 * PAGE) bytes.fill(0, off, off + PAGE)
  return bytes
}

const mib = (n: number): string => (n / MiB).toFixed(0)

async function main (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-bench-load-'))
  const startLoad = loadavg()[0]
  try {
    // ---------------------------------------------------------------- 1: N migrations into one host
    const a = join(dir, 'a')
    const b = join(dir, 'b')
    const s = join(dir, 's')
    await run(['init', '--repo', a, '--site', 'paris', '--listen', '/ip4/127.0.1.30/tcp/0'])
    await run(['init', '--repo', b, '--site', 'berlin', '--listen', '/ip4/127.0.2.30/tcp/0', '--fabric-key', join(a, 'fabric.key')])
    await run(['init', '--repo', s, '--site', 'paris', '--listen', '/ip4/127.0.1.31/tcp/0', '--fabric-key', join(a, 'fabric.key')])
    const da = await daemon(a)
    const db = await daemon(b, ['--bootstrap', da.addresses[0]])
    const api = await HttpApiClient.connect(da.api, { timeout: 30_000, token: await readApiToken(a) }) as any
    const files: string[] = []
    for (let i = 0; i < opts.migrations; i++) {
      const file = join(dir, `vm${i}.ram`)
      await writeFile(file, image(opts.migrationMib))
      await api.importImage(file, { name: `vm${i}` })
      files.push(file)
    }
    const idleB = await status(db.pid)
    let peakB = idleB.rss
    const sampler = setInterval(() => { status(db.pid).then(x => { peakB = Math.max(peakB, x.rss) }).catch(() => {}) }, 100)
    const t0 = performance.now()
    const reports = await Promise.all(files.map(async (_, i) => api.migrate(`vm${i}`, db.peerId, { out: `vm${i}.ram` })))
    const migrateMs = performance.now() - t0
    clearInterval(sampler)
    let identical = 0
    for (let i = 0; i < files.length; i++) {
      if ((await readFile(join(b, 'out', `vm${i}.ram`))).equals(await readFile(files[i]))) identical++
    }
    const afterB = await status(db.pid)
    const migrations = {
      count: opts.migrations,
      imageMib: opts.migrationMib,
      identical,
      pagesFetched: reports.reduce((n: number, r: any) => n + r.tiers.source.pages, 0),
      seconds: migrateMs / 1000,
      destination: { idleRss: idleB.rss, peakRssSampled: peakB, vmHwm: afterB.hwm }
    }
    console.log('migrations', migrations)
    await api.close()

    // ---------------------------------------------------------------- 2: P peers fetching from one host
    const ds = await daemon(s)
    const sapi = await HttpApiClient.connect(ds.api, { timeout: 30_000, token: await readApiToken(s) }) as any
    const file = join(dir, 'shared.ram')
    await writeFile(file, image(opts.imageMib))
    await sapi.importImage(file, { name: 'shared' })
    await sapi.close()
    const idleS = await status(ds.pid)
    let peakS = idleS.rss
    const sampler2 = setInterval(() => { status(ds.pid).then(x => { peakS = Math.max(peakS, x.rss) }).catch(() => {}) }, 100)
    const t1 = performance.now()
    const perProc = Math.ceil(opts.peers / opts.procs)
    const results = await Promise.all(Array.from({ length: opts.procs }, async () => {
      const child = spawn(process.execPath, [LOAD_PEERS, join(s, 'fabric.key'), ds.addresses[0], file, String(perProc), String(opts.rounds)], { env: env(), stdio: ['ignore', 'pipe', 'inherit'], detached: true })
      children.push(child)
      let out = ''
      child.stdout.setEncoding('utf8').on('data', (x: string) => { out += x })
      await new Promise(resolve => { child.once('close', resolve) })
      return JSON.parse(out.trim().split('\n').pop() ?? '{}')
    }))
    const fetchMs = performance.now() - t1
    clearInterval(sampler2)
    const afterS = await status(ds.pid)
    const fetches = {
      peers: perProc * opts.procs,
      processes: opts.procs,
      imageMib: opts.imageMib,
      rounds: opts.rounds,
      distinctPages: results[0]?.distinctPages,
      pagesReceived: results.reduce((n, r) => n + (r.pages ?? 0), 0),
      failures: results.reduce((n, r) => n + (r.failures ?? 1) + (r.missing ?? 0) + (r.mismatched ?? 0), 0),
      retries: results.reduce((n, r) => n + (r.retries ?? 0), 0),
      errors: results.flatMap(r => r.errors ?? []),
      seconds: fetchMs / 1000,
      server: { idleRss: idleS.rss, peakRssSampled: peakS, vmHwm: afterS.hwm }
    }
    console.log('fetches', fetches)

    const machine = { cpu: cpus()[0]?.model, cores: cpus().length, memoryGiB: totalmem() / 1024 ** 3, loadAtStart: startLoad, loadAtEnd: loadavg()[0], node: process.version }
    const result = { date: new Date().toISOString(), machine, options: opts, migrations, fetches }
    await mkdir(join(ROOT, 'bench', 'results'), { recursive: true })
    await writeFile(join(ROOT, 'bench', 'results', 'load.json'), JSON.stringify(result, null, 2) + '\n')
    if (opts.docs) await writeFile(join(ROOT, 'docs', 'bench-load.md'), render(result))
  } finally {
    killAll()
    await rm(dir, { recursive: true, force: true })
  }
}

function render (r: any): string {
  const m = r.migrations
  const f = r.fetches
  return `# Load benchmark (\`node bench/load.ts\`)

Real \`memfabric daemon\` processes on loopback (tcp + noise + yamux, the fabric key), one OS
process each. Memory is the daemon's peak resident set: \`VmHWM\` from \`/proc/PID/status\`
(the kernel's high-water mark over the process's life), and the highest \`VmRSS\` sampled every
100 ms during the load.

Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGiB.toFixed(1)} GiB, Node ${r.machine.node};
load average ${r.machine.loadAtStart.toFixed(1)} at start, ${r.machine.loadAtEnd.toFixed(1)} at end (a shared
machine: other work was running, so durations are indicative only). ${r.date}.

## ${m.count} migrations into one host at once

A source daemon offers ${m.count} distinct ${m.imageMib} MiB images (random pages, a quarter zero pages)
to one destination daemon concurrently (\`migrate\` RPCs on the source's control API).

| | |
|---|---|
| migrations complete, byte-identical | **${m.identical} / ${m.count}** |
| pages fetched by the destination | ${m.pagesFetched.toLocaleString('en')} |
| wall time | ${m.seconds.toFixed(1)} s |
| destination RSS idle | ${mib(m.destination.idleRss)} MiB |
| destination peak RSS (sampled) | ${mib(m.destination.peakRssSampled)} MiB |
| **destination VmHWM** | **${mib(m.destination.vmHwm)} MiB** |

## ${f.peers} peers fetching one image from one host

${f.processes} processes × ${f.peers / f.processes} libp2p hosts (each its own connection, the fabric key)
fetch every distinct page (${f.distinctPages?.toLocaleString('en')}) of a ${f.imageMib} MiB image from one daemon at once,
${f.rounds} time(s) each, over \`/memfabric/pages/1.0.0\`; each page verified against its CID and
compared with the file.

| | |
|---|---|
| pages received (all verified) | **${f.pagesReceived.toLocaleString('en')}** (${f.peers} × ${f.distinctPages?.toLocaleString('en')} × ${f.rounds}) |
| failures / missing / mismatched | ${f.failures} |
| transfers retried for their missing pages (idle timeout on the loaded machine) | ${f.retries} |
| wall time | ${f.seconds.toFixed(1)} s |
| server RSS idle | ${mib(f.server.idleRss)} MiB |
| server peak RSS (sampled) | ${mib(f.server.peakRssSampled)} MiB |
| **server VmHWM** | **${mib(f.server.vmHwm)} MiB** |

## Reading the figures

Growth over idle: **${mib((m.destination.vmHwm - m.destination.idleRss) / m.count)} MiB per concurrent incoming migration**
and **${mib((f.server.vmHwm - f.server.idleRss) / f.peers)} MiB per concurrently fetching peer**. Both are bounded per
migration and per peer, but there is no global cap: memory grows linearly with the number of
peers fetching at once (a fabric member opening many connections, or a very large fabric, can
push a host's memory up; see SECURITY.md, availability).

What bounds the memory: per stream at most \`maxInflightPerStream\` (8) requests of ≤ 256 pages are
served at once and a response frame is ~1 MiB; inbound page streams are capped per peer (16)
and per connection; the destination plans ${'`'}DEFAULT_WINDOWS_IN_FLIGHT${'`'} windows of pages at a time and
writes them in batches. Raw figures: \`bench/results/load.json\`.
The test \`test/e2e/load.test.ts\` runs a smaller version (8 × 2 MiB migrations, 32 peers × 4 MiB)
and checks the same properties.
`
}

if (process.argv.includes('--render')) {
  // docs from the stored figures, without running the load again
  const stored = JSON.parse(await readFile(join(ROOT, 'bench', 'results', 'load.json'), 'utf8'))
  await writeFile(join(ROOT, 'docs', 'bench-load.md'), render(stored))
} else {
  await main()
}
process.exit(0)
