/**
 * Page fetch benchmark: two real peers on loopback (tcp + noise + yamux), the server in a
 * child process so each peer has its own event loop (this machine has 2 cores). The server
 * holds N deterministic random pages (≥ 256 MiB); the client fetches all of them with
 * `/memfabric/pages/1.0.0`, verifying every page, and reports MB/s (10^6 bytes/s, median of
 * the runs). A baseline in the same run: raw bytes blasted over one libp2p stream on the same
 * connection, so the fetch figure can be quoted as a ratio.
 *
 * Ceilings measured in the same run, so each layer's cost is plain: raw TCP over loopback
 * (node:net, no libp2p), raw bytes over one noise+yamux stream, over several streams of one
 * connection and over several connections.
 *
 * Usage: node bench/fetch.ts [--mib 256] [--runs 3] [--streams 1,4] [--conns 2] [--no-repo]
 *        [--no-docs] [--only fetch] [--cpu-prof DIR] [--out FILE] [--docs-from FILE]
 * `--cpu-prof DIR` writes V8 CPU profiles of both peers (server and client) into DIR.
 * Writes bench/results/fetch.json and the fetch section of docs/bench-node.md.
 * This file only reports figures; it asserts nothing about speed.
 */
import { spawn } from 'node:child_process'
import { createServer, connect } from 'node:net'
import type { AddressInfo, Socket } from 'node:net'
import { createCipheriv, createHash, hash as hashOnce, randomBytes } from 'node:crypto'
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { multiaddr } from '@multiformats/multiaddr'
import type { Connection, Stream } from '@libp2p/interface'
import { createHost } from '../node/libp2p.ts'
import { pageExchange } from '../protocols/pages/index.ts'
import type { PageExchange } from '../protocols/pages/index.ts'
import { PAGE_SIZE } from '../store/constants.ts'
import { pageCid } from '../store/page.ts'
import type { Page, PageStore } from '../store/index.ts'
import { MemoryPageStore } from '../test/fixtures/memory-page-store.ts'

const BLAST_PROTOCOL = '/memfabric/bench-blast/1.0.0'
const BLAST_CHUNK = 1024 * 1024
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

function arg (name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] != null ? process.argv[i + 1] : fallback
}

/** The same pseudo-random bytes in both processes: an AES-CTR keystream from a fixed seed. */
function imageBytes (mib: number): Buffer {
  const key = createHash('sha256').update('memfabric bench/fetch').digest()
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16))
  return cipher.update(Buffer.alloc(mib * 1024 * 1024))
}

function pagesOf (image: Buffer): Page[] {
  const pages: Page[] = []
  for (let off = 0; off < image.byteLength; off += PAGE_SIZE) {
    const bytes = image.subarray(off, off + PAGE_SIZE)
    pages.push({ cid: pageCid(bytes), bytes })
  }
  return pages
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

// ------------------------------------------------------------------ server (child process)

async function serve (): Promise<void> {
  const mib = Number(arg('mib', '256'))
  const kind = arg('store', 'memory')
  const pages = pagesOf(imageBytes(mib))
  let store: PageStore
  let close = async (): Promise<void> => {}
  if (kind === 'repo') {
    const { Repo } = await import('../store/repo.ts')
    const dir = await mkdtemp(join(tmpdir(), 'memfabric-bench-fetch-'))
    const repo = await Repo.init(dir)
    for (let i = 0; i < pages.length; i += 4096) {
      await repo.store.putMany(pages.slice(i, i + 4096))
    }
    store = repo.store
    close = async () => { await repo.close(); await rm(dir, { recursive: true, force: true }) }
  } else {
    const memory = new MemoryPageStore()
    await memory.putMany(pages)
    store = memory
  }
  const node = await createHost<{ pages: PageExchange }>({ services: { pages: pageExchange({ store }) } })
  await node.handle(BLAST_PROTOCOL, async (stream: Stream) => {
    // the client sends the number of MiB it wants, then we write raw bytes as fast as it takes them
    const chunk = Buffer.alloc(BLAST_CHUNK, 7)
    try {
      let ask: Uint8Array | undefined
      for await (const buf of stream) {
        ask = buf.subarray()
        break
      }
      const total = (ask == null ? 0 : Buffer.from(ask).readUInt32BE(0)) * 1024 * 1024
      for (let sent = 0; sent < total; sent += BLAST_CHUNK) {
        if (!stream.send(chunk)) {
          await stream.onDrain({ signal: AbortSignal.timeout(30_000) })
        }
      }
      await stream.close({ signal: AbortSignal.timeout(30_000) })
    } catch (err: any) {
      stream.abort(err)
    }
  }, { maxInboundStreams: 32 })
  // the floor under libp2p: the same blast over a bare TCP socket (no noise, no yamux)
  const tcp = createServer(socket => { blastSocket(socket).catch(() => { socket.destroy() }) })
  await new Promise<void>(resolve => { tcp.listen(0, '127.0.0.1', resolve) })
  const tcpPort = (tcp.address() as AddressInfo).port
  process.stdout.write(JSON.stringify({ addr: node.getMultiaddrs()[0].toString(), tcpPort, pages: pages.length }) + '\n')
  // run until the parent closes our stdin
  process.stdin.resume()
  await new Promise(resolve => process.stdin.once('end', resolve))
  tcp.close()
  await node.stop()
  await close()
  process.exit(0)
}

/** Server side of the raw TCP blast: read the MiB asked (u32), write that many bytes, end. */
async function blastSocket (socket: Socket): Promise<void> {
  const ask = await new Promise<Buffer>((resolve, reject) => {
    let got = Buffer.alloc(0)
    const onData = (buf: Buffer): void => {
      got = Buffer.concat([got, buf])
      if (got.byteLength >= 4) {
        socket.off('data', onData)
        resolve(got)
      }
    }
    socket.on('data', onData)
    socket.once('error', reject)
  })
  const total = ask.readUInt32BE(0) * 1024 * 1024
  const chunk = Buffer.alloc(BLAST_CHUNK, 7)
  for (let sent = 0; sent < total; sent += BLAST_CHUNK) {
    if (!socket.write(chunk)) {
      await new Promise(resolve => socket.once('drain', resolve))
    }
  }
  socket.end()
}

// ------------------------------------------------------------------ client (parent)

interface Server { addr: string, tcpPort: number, pid: number, stop: () => Promise<void> }

/** CPU seconds a process has used so far (Linux /proc; 0 elsewhere). */
async function procCpuSeconds (pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // utime and stime are fields 14 and 15 of the line, in clock ticks (100/s on Linux)
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return 0
  }
}

async function startServer (mib: number, store: string): Promise<Server> {
  const profDir = arg('cpu-prof', '')
  const prof = profDir === '' ? [] : ['--cpu-prof', '--cpu-prof-dir', profDir, '--cpu-prof-name', `server-${store}-${Date.now()}.cpuprofile`]
  const child = spawn(process.execPath, [...prof, fileURLToPath(import.meta.url), '--serve', '--mib', String(mib), '--store', store], {
    stdio: ['pipe', 'pipe', 'inherit']
  })
  const lines = createInterface({ input: child.stdout })
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve)
    child.once('exit', code => { reject(new Error(`bench server exited with ${code}`)) })
  })
  const { addr, tcpPort } = JSON.parse(first)
  return {
    addr,
    tcpPort,
    pid: child.pid ?? 0,
    stop: async () => {
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.stdin.end()
      await exited
    }
  }
}

/**
 * What one core does per GB at each per-byte step of the path, in this process, nothing else
 * running in it: noise's cipher (chacha20-poly1305 on 65,519-byte messages, as noise sends them),
 * sha2-256 of 4 KiB pages (verification), a memcpy into a reused buffer and into fresh buffers
 * (new memory costs page faults on this VM). CPU seconds per GB (lower is faster).
 */
function layerCosts (): Record<string, number> {
  const data = randomBytes(64 * 1024 * 1024)
  const gb = data.byteLength / 1e9
  const cost = (fn: () => void): number => {
    fn()
    const samples: number[] = []
    for (let i = 0; i < 3; i++) {
      const c0 = process.cpuUsage()
      fn()
      const c = process.cpuUsage(c0)
      samples.push((c.user + c.system) / 1e6 / gb)
    }
    return Number(median(samples).toFixed(2))
  }
  const key = randomBytes(32)
  const nonce = Buffer.alloc(12)
  const NOISE_MSG = 65519
  const reused = Buffer.allocUnsafe(1024 * 1024)
  return {
    'chacha20-poly1305 (noise, 64 KiB messages)': cost(() => {
      for (let at = 0; at < data.byteLength; at += NOISE_MSG) {
        const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 })
        cipher.update(data.subarray(at, at + NOISE_MSG))
        cipher.final()
        cipher.getAuthTag()
      }
    }),
    'sha2-256 per 4 KiB page (verification)': cost(() => {
      for (let at = 0; at < data.byteLength; at += PAGE_SIZE) hashOnce('sha256', data.subarray(at, at + PAGE_SIZE), 'buffer')
    }),
    'memcpy pages into a reused 1 MiB buffer': cost(() => {
      for (let at = 0; at < data.byteLength; at += PAGE_SIZE) reused.set(data.subarray(at, at + PAGE_SIZE), at % reused.byteLength)
    }),
    'memcpy pages into fresh 1 MiB buffers': cost(() => {
      let frame = Buffer.allocUnsafe(1024 * 1024)
      for (let at = 0; at < data.byteLength; at += PAGE_SIZE) {
        if (at % frame.byteLength === 0) frame = Buffer.allocUnsafe(1024 * 1024)
        frame.set(data.subarray(at, at + PAGE_SIZE), at % frame.byteLength)
      }
    })
  }
}

/** Client side of the raw TCP blast. */
async function blastTcp (port: number, mib: number): Promise<number> {
  const socket = connect(port, '127.0.0.1')
  const ask = Buffer.alloc(4)
  ask.writeUInt32BE(mib)
  socket.write(ask)
  let got = 0
  for await (const buf of socket) {
    got += (buf as Buffer).byteLength
  }
  if (got !== mib * 1024 * 1024) {
    throw new Error(`tcp blast got ${got}/${mib * 1024 * 1024} bytes`)
  }
  return got
}

/** A CPU profile of this process while `fn` runs (`--cpu-prof DIR`), written next to the server's. */
async function profiled<T> (fn: () => Promise<T>): Promise<T> {
  const dir = arg('cpu-prof', '')
  if (dir === '') return fn()
  const { Session } = await import('node:inspector/promises')
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.start')
  try {
    return await fn()
  } finally {
    const { profile } = await session.post('Profiler.stop')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, `client-${Date.now()}.cpuprofile`), JSON.stringify(profile))
    session.disconnect()
  }
}

async function main (): Promise<void> {
  const mib = Number(arg('mib', '256'))
  const runs = Number(arg('runs', '3'))
  const streamCounts = arg('streams', '1,4').split(',').map(Number)
  const withRepo = !process.argv.includes('--no-repo')
  const conns = Number(arg('conns', '2'))
  const only = new Set(arg('only', '').split(',').filter(x => x !== ''))
  const loadStart = loadavg()[0]
  console.log(`bench/fetch: ${mib} MiB (${mib * 256} pages), ${runs} runs, load average ${loadStart.toFixed(2)}`)

  const pages = pagesOf(imageBytes(mib))
  const cids = pages.map(p => p.cid)
  const total = pages.length * PAGE_SIZE
  const client = await createHost<{ pages: PageExchange }>({ services: { pages: pageExchange({ store: new MemoryPageStore() }) } })
  const results: Record<string, any> = {}

  const time = async (name: string, server: Server, fn: () => Promise<number>): Promise<void> => {
    const mbs: number[] = []
    const cpu: number[] = []
    const perCpu: number[] = []
    const clientPerGb: number[] = []
    const serverPerGb: number[] = []
    for (let i = 0; i < runs; i++) {
      const c0 = process.cpuUsage()
      const s0 = await procCpuSeconds(server.pid)
      const t0 = performance.now()
      const bytes = await fn()
      const s = (performance.now() - t0) / 1000
      const c = process.cpuUsage(c0)
      const clientCpu = (c.user + c.system) / 1e6
      const serverCpu = (await procCpuSeconds(server.pid)) - s0
      mbs.push(bytes / 1e6 / s)
      cpu.push(clientCpu / s)
      perCpu.push(bytes / 1e6 / Math.max(clientCpu, serverCpu))
      clientPerGb.push(clientCpu / (bytes / 1e9))
      serverPerGb.push(serverCpu / (bytes / 1e9))
    }
    results[name] = {
      mbPerSec: Math.round(median(mbs)),
      runs: mbs.map(Math.round),
      clientCpuCores: Number(median(cpu).toFixed(2)),
      // what one peer's core can carry: bytes over the busier side's CPU seconds
      mbPerBusiestCpuSecond: Math.round(median(perCpu)),
      // CPU seconds each peer spent per GB moved: what limits the rate once each has a core
      clientCpuSecondsPerGb: Number(median(clientPerGb).toFixed(2)),
      serverCpuSecondsPerGb: Number(median(serverPerGb).toFixed(2))
    }
    const r = results[name]
    console.log(`  ${name.padEnd(30)} ${String(r.mbPerSec).padStart(5)} MB/s  runs ${r.runs.join(', ')}  client CPU ${r.clientCpuCores}  per busiest CPU-s ${r.mbPerBusiestCpuSecond} MB  CPU-s/GB client ${r.clientCpuSecondsPerGb} server ${r.serverCpuSecondsPerGb}`)
  }

  const fetchAll = (addr: string, streams: number) => async (): Promise<number> => {
    let verified = 0
    const res = await client.services.pages.fetch(multiaddr(addr), cids, {
      streams,
      onPage: (_cid, bytes) => { verified += bytes.byteLength }
    })
    if (res.received.length !== cids.length || verified !== total) {
      throw new Error(`fetched ${res.received.length}/${cids.length} pages`)
    }
    return verified
  }

  const blastStream = async (stream: Stream, mibs: number): Promise<number> => {
    const ask = Buffer.alloc(4)
    ask.writeUInt32BE(mibs)
    stream.send(ask)
    let got = 0
    for await (const buf of stream) {
      got += buf.byteLength
    }
    await stream.close()
    if (got !== mibs * 1024 * 1024) {
      throw new Error(`blast got ${got}/${mibs * 1024 * 1024} bytes`)
    }
    return got
  }
  const blastStreams = (conns: Connection[], n: number) => async (): Promise<number> => {
    const share = Math.floor(mib / n)
    const done = await Promise.all(Array.from({ length: n }, async (_, i) => blastStream(await conns[i % conns.length].newStream(BLAST_PROTOCOL), share)))
    return done.reduce((a, b) => a + b, 0)
  }

  const memory = await startServer(mib, 'memory')
  const extra: Connection[] = []
  try {
    const conn = await client.dial(multiaddr(memory.addr))
    if (!only.has('fetch')) {
      await time('ceiling: raw TCP (node:net)', memory, async () => blastTcp(memory.tcpPort, mib))
      await time('ceiling: 1 noise+yamux stream', memory, blastStreams([conn], 1))
      await time(`ceiling: ${Math.max(...streamCounts)} streams, 1 connection`, memory, blastStreams([conn], Math.max(...streamCounts)))
      for (let i = 1; i < conns; i++) extra.push(await client.dial(multiaddr(memory.addr), { force: true }))
      await time(`ceiling: ${conns} connections, 1 stream each`, memory, blastStreams([conn, ...extra], conns))
    }
    for (const n of streamCounts) {
      await time(`fetch memory store, ${n} stream${n > 1 ? 's' : ''}`, memory, fetchAll(memory.addr, n))
    }
  } finally {
    await Promise.all(extra.map(async c => c.close()))
    await memory.stop()
  }

  if (withRepo) {
    const repo = await startServer(mib, 'repo')
    try {
      for (const n of streamCounts) {
        await time(`fetch repo store, ${n} stream${n > 1 ? 's' : ''}`, repo, fetchAll(repo.addr, n))
      }
    } finally {
      await repo.stop()
    }
  }
  await client.stop()
  const layers = layerCosts()
  for (const [k, v] of Object.entries(layers)) console.log(`  one core: ${k.padEnd(44)} ${v} CPU-s/GB (${Math.round(1 / v * 1000)} MB/s)`)

  const blast = results['ceiling: 1 noise+yamux stream']?.mbPerSec ?? NaN
  const best = Math.max(...Object.entries(results).filter(([k]) => k.startsWith('fetch memory')).map(([, v]) => v.mbPerSec))
  const out = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    loadAverage: { start: Number(loadStart.toFixed(2)), end: Number(loadavg()[0].toFixed(2)) },
    mib,
    pages: pages.length,
    runs,
    setup: 'server in a child process, client in this one; tcp+noise+yamux on 127.0.0.1; window 8, 256 CIDs/request, ~1 MiB frames; every page sha2-256 verified on arrival; ceilings: 1 MiB writes over node:net, one noise+yamux stream, several streams, several connections',
    results,
    /** CPU seconds per GB of each per-byte step on one core of this process (see layerCosts). */
    layerCpuSecondsPerGb: layers,
    ratioBestFetchToBlast: Number((best / blast).toFixed(2))
  }
  await mkdir(join(ROOT, 'bench/results'), { recursive: true })
  await writeFile(arg('out', join(ROOT, 'bench/results/fetch.json')), JSON.stringify(out, null, 2) + '\n')
  console.log(`  best verified fetch / raw stream = ${out.ratioBestFetchToBlast}`)
  if (!process.argv.includes('--no-docs')) {
    await writeDocs(out)
  }
}

async function writeDocs (out: any): Promise<void> {
  const path = join(ROOT, 'docs/bench-node.md')
  const rows = Object.entries(out.results).map(([k, v]: [string, any]) => `| ${k} | **${v.mbPerSec}** | ${v.runs.join(', ')} | ${v.clientCpuCores} | ${v.mbPerBusiestCpuSecond} | ${v.clientCpuSecondsPerGb} | ${v.serverCpuSecondsPerGb} |`)
  const section = [
    '<!-- bench:fetch:begin -->',
    '## Page fetch (`node bench/fetch.ts`)',
    '',
    `Two real peers on loopback (tcp + noise + yamux on 127.0.0.1): the server in a child process,`,
    `the client in the bench process, so each has its own event loop on this ${out.cpus}-core machine.`,
    `The server holds ${out.mib} MiB (${out.pages.toLocaleString('en')} random pages); the client fetches all of them`,
    'with `/memfabric/pages/1.0.0` (window 8, 256 CIDs per request, ~1 MiB response frames) and',
    'verifies every page (sha2-256) on arrival. MB/s = 10^6 bytes/s of verified page bytes, median of',
    `${out.runs}. Ceilings in the same run, same processes: raw bytes over a bare TCP socket (node:net, 1 MiB`,
    'writes), over one noise+yamux stream, over several streams of one connection, over several connections.',
    `Load average at start ${out.loadAverage.start}, at end ${out.loadAverage.end} (other work shares the machine).`,
    'Wall-clock MB/s swings with that load; the CPU columns are steadier: CPU seconds each peer spent per',
    'GB moved, and bytes over the busier peer\'s CPU seconds (what the pair could carry with a core each).',
    '',
    '| | MB/s (median) | runs | client CPU (cores) | MB per CPU-second of the busier peer | client CPU-s/GB | server CPU-s/GB |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `Best verified fetch / one noise+yamux stream: **×${out.ratioBestFetchToBlast}**.`,
    '',
    'What the pair could carry with a core each (1 / the busier peer\'s CPU-s/GB): ' +
      Object.entries(out.results).map(([k, v]: [string, any]) => `${k.replace('ceiling: ', '')} ${Math.round(1000 / Math.max(v.clientCpuSecondsPerGb, v.serverCpuSecondsPerGb))}`).join('; ') + ' MB/s.',
    '',
    'Where the time goes (`--cpu-prof`, fetch from the memory store over one stream, setup excluded,',
    'measured 2026-11-25 at load ~8): client — noise decrypt 31 %, GC 23 %, page protocol 11 %, sha2-256',
    'verification 10 %, TCP socket 8 %, libp2p stream plumbing 6 %, lp framing 2 %, yamux 1 %; server —',
    'TCP socket writes 34 %, noise encrypt 26 %, page protocol + memory store 17 %, GC 7 %. Noise creates',
    'a cipher per 64 KiB message (key-object setup ~6 % of each peer) and its output buffers are new memory;',
    'fresh memory is what costs on this VM (row "fresh buffers" below), which is why the server sends frames',
    'as lists of views of the store\'s pages: copying them into flat frames measured ~2.5 CPU-s/GB more on',
    'the server (A/B, same load) than the extra noise pieces cost.',
    '',
    'Per-byte steps on one core, measured in the bench process after the transfers (CPU seconds per GB;',
    'MB/s is what a core doing only that step would reach):',
    '',
    '| step | CPU-s/GB | MB/s on one core |',
    '|---|---|---|',
    ...Object.entries(out.layerCpuSecondsPerGb).map(([k, v]: [string, any]) => `| ${k} | ${v} | ${Math.round(1000 / v)} |`),
    '',
    'Target of issue 3, 300 MB/s of verified pages: ' + (Math.max(...Object.entries(out.results).filter(([k]) => k.startsWith('fetch')).map(([, v]: [string, any]) => v.mbPerSec)) >= 300
      ? '**met**.'
      : '**not met** on this machine. Each peer has one event loop, so extra streams or connections share its core: the' +
        ' client alone spends a noise decrypt plus a sha2-256 per byte, which caps one core at' +
        ` ${Math.round(1000 / (Object.values(out.layerCpuSecondsPerGb as Record<string, number>)[0] + Object.values(out.layerCpuSecondsPerGb as Record<string, number>)[1]))} MB/s` +
        ' before TCP, yamux, GC and the protocol take their share; one noise+yamux stream already stays below 300 MB per' +
        ' CPU-second of the busier peer (table above).'),
    '',
    `Raw figures: \`bench/results/fetch.json\` (${out.date}, Node ${out.node}).`,
    '<!-- bench:fetch:end -->'
  ].join('\n')
  let text = ''
  try {
    text = await readFile(path, 'utf8')
  } catch {
    text = '# Node benchmarks\n'
  }
  const re = /<!-- bench:fetch:begin -->[\s\S]*?<!-- bench:fetch:end -->/
  text = re.test(text) ? text.replace(re, section) : text.trimEnd() + '\n\n' + section + '\n'
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, text)
}

if (process.argv.includes('--serve')) {
  await serve()
} else if (arg('docs-from', '') !== '') {
  // re-render the docs section from a results file without running anything
  await writeDocs(JSON.parse(await readFile(arg('docs-from', ''), 'utf8')))
} else {
  await profiled(main)
}
