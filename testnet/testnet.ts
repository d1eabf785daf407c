/**
 * The local multi-site test network: real `memfabric daemon` processes (one repository and one
 * OS process each, real TCP and noise) on loopback, one address range per site, the links
 * between sites shaped and counted by the WAN emulator.
 *
 * Host h of site s listens on 127.0.s.h with a port chosen up front, so the emulator can expose
 * it before any daemon starts and each daemon gets its site's dial map.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { logger } from '@libp2p/logger'
import { TestnetError } from './errors.ts'
import { HttpApiClient } from '../node/api/http-client.ts'
import { readApiToken } from '../node/api/token.ts'
import type { MemfabricApi, PeerSummary } from '../node/api/index.ts'
import { WanEmulator } from './wan/index.ts'
import type { WanLinkStats } from './wan/index.ts'
import { DEFAULT_HOSTS, DEFAULT_SITES, DEFAULT_TESTNET_LAN_MBIT, DEFAULT_TESTNET_WAN_MBIT, DEFAULT_TESTNET_WAN_RTT_MS, SITE_NAMES } from './constants.ts'

const log = logger('memfabric:testnet')

/** How long a daemon has to print its ready line, ms */
export const DEFAULT_START_TIMEOUT_MS = 30_000
/** How long the nodes have to see their peers, ms */
export const DEFAULT_MESH_TIMEOUT_MS = 30_000
/** How long a daemon has to exit after SIGTERM before SIGKILL, ms */
export const DEFAULT_STOP_TIMEOUT_MS = 5_000
/** The `memfabric` executable the daemons run */
export const BIN = fileURLToPath(new URL('../cli/bin.ts', import.meta.url))

export { TestnetError }

export interface TestnetOptions {
  /** Number of sites, 1..26 (default DEFAULT_SITES) */
  sites?: number
  /** Hosts per site, 1..253 (default DEFAULT_HOSTS) */
  hosts?: number
  /** Round trip between sites, ms (default DEFAULT_TESTNET_WAN_RTT_MS) */
  wanRttMs?: number
  /** Bandwidth per direction between two sites, Mbit/s (default DEFAULT_TESTNET_WAN_MBIT) */
  wanMbit?: number
  /** LAN bandwidth inside a site, Mbit/s; 0 = direct (default DEFAULT_TESTNET_LAN_MBIT) */
  lanMbit?: number
  /** Working directory (repos, dial maps, logs); kept when given (default: a temp dir, removed by stop()) */
  dir?: string
  /** Remove `dir` on stop even when it was given (default false) */
  removeDir?: boolean
  /** Environment of the daemons (default process.env without MEMFABRIC_REPO) */
  env?: NodeJS.ProcessEnv
  startTimeoutMs?: number
  meshTimeoutMs?: number
  stopTimeoutMs?: number
  signal?: AbortSignal
}

export interface TestnetNode {
  /** `A1`, `B3` ... */
  readonly name: string
  readonly site: string
  readonly siteId: number
  readonly host: number
  readonly ip: string
  readonly port: number
  readonly repo: string
  readonly peerId: string
  /** Real listen address with /p2p/ */
  readonly multiaddr: string
  api: MemfabricApi & HttpApiClient
  apiUrl: string
  pid: number
}

interface Daemon {
  child: ChildProcess
  exited: Promise<void>
  stderr: string[]
}

/** A running test network; `stop()` tears it down (idempotent). */
export class Testnet {
  readonly dir: string
  readonly nodes: TestnetNode[] = []
  readonly wan: WanEmulator
  readonly sites: number
  readonly hosts: number
  private readonly daemons: Daemon[] = []
  private readonly removeDir: boolean
  private readonly stopTimeoutMs: number
  private stopping?: Promise<void>
  private readonly onExit: () => void

  private constructor (dir: string, removeDir: boolean, wan: WanEmulator, sites: number, hosts: number, stopTimeoutMs: number) {
    this.dir = dir
    this.removeDir = removeDir
    this.wan = wan
    this.sites = sites
    this.hosts = hosts
    this.stopTimeoutMs = stopTimeoutMs
    // last resort: never leave daemons behind when this process exits without stop()
    this.onExit = () => { for (const d of this.daemons) killGroup(d.child, 'SIGKILL') }
    process.once('exit', this.onExit)
  }

  /** Start the network and wait until every node sees all its peers. */
  static async create (options: TestnetOptions = {}): Promise<Testnet> {
    const sites = checkInt('sites', options.sites ?? DEFAULT_SITES, 1, SITE_NAMES.length)
    const hosts = checkInt('hosts', options.hosts ?? DEFAULT_HOSTS, 1, 253)
    const lanMbit = options.lanMbit ?? DEFAULT_TESTNET_LAN_MBIT
    const dir = options.dir ?? await mkdtemp(join(tmpdir(), 'memfabric-testnet-'))
    await mkdir(dir, { recursive: true })
    const wan = await WanEmulator.create({
      sites: Array.from({ length: sites }, (_, i) => ({ id: i + 1, name: SITE_NAMES[i] })),
      wanRttMs: options.wanRttMs ?? DEFAULT_TESTNET_WAN_RTT_MS,
      wanMbit: options.wanMbit ?? DEFAULT_TESTNET_WAN_MBIT,
      ...(lanMbit > 0 ? { lanMbit } : {})
    })
    const net = new Testnet(dir, options.dir == null || options.removeDir === true, wan, sites, hosts, options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS)
    try {
      await net.start(options)
      return net
    } catch (err) {
      await net.stop()
      throw err
    }
  }

  private async start (options: TestnetOptions): Promise<void> {
    const env = options.env ?? childEnv()
    const signal = options.signal
    const startTimeout = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS
    // ports first: the emulator exposes every node before any daemon dials
    const plan: Array<{ name: string, site: string, siteId: number, host: number, ip: string, port: number, repo: string }> = []
    for (let s = 1; s <= this.sites; s++) {
      for (let h = 1; h <= this.hosts; h++) {
        const ip = `127.0.${s}.${h}`
        const port = await freePort(ip)
        await this.wan.expose({ site: s, host: ip, port })
        plan.push({ name: `${SITE_NAMES[s - 1]}${h}`, site: SITE_NAMES[s - 1], siteId: s, host: h, ip, port, repo: join(this.dir, `${SITE_NAMES[s - 1]}${h}`) })
      }
    }
    for (let s = 1; s <= this.sites; s++) {
      await writeFile(join(this.dir, `dial-map-${SITE_NAMES[s - 1]}.json`), JSON.stringify(this.wan.dialMap(s), null, 2))
    }
    // repos (and so peer ids) up front: every daemon can bootstrap to every other node
    // (in-process Repo.init, what `memfabric init` runs: six CLI processes cost ~20 s on 2 cores)
    const { Repo } = await import('../store/repo.ts')
    const ids: string[] = []
    for (const p of plan) {
      signal?.throwIfAborted()
      const repo = await Repo.init(p.repo, { site: p.site, listen: [`/ip4/${p.ip}/tcp/${p.port}`] })
      ids.push(repo.config.identity.peerId)
      await repo.close()
    }
    log('%d repos initialised', ids.length)
    const addrs = plan.map((p, i) => `/ip4/${p.ip}/tcp/${p.port}/p2p/${ids[i]}`)
    // all at once, each bootstrapped to every other node: of two daemons, the one that starts
    // later reaches the other, so every pair connects (the mesh wait below checks it)
    const started = await Promise.allSettled(plan.map(async (p, i) =>
      this.spawnNode(p, ids[i], addrs[i], addrs.filter((_, j) => j !== i), env, startTimeout, signal)))
    for (const r of started) {
      if (r.status === 'rejected') throw r.reason
      this.nodes.push(r.value)
    }
    log('%d daemons ready', this.nodes.length)
    await this.waitForMesh(options.meshTimeoutMs ?? DEFAULT_MESH_TIMEOUT_MS, signal)
    log('testnet up: %d sites x %d hosts in %s', this.sites, this.hosts, this.dir)
  }

  private async spawnNode (p: { name: string, site: string, siteId: number, host: number, ip: string, port: number, repo: string },
    peerId: string, multiaddr: string, bootstrap: string[], env: NodeJS.ProcessEnv, timeoutMs: number, signal?: AbortSignal): Promise<TestnetNode> {
    const args = [BIN, 'daemon', '--repo', p.repo, '--api-port', '0', '--dial-map', join(this.dir, `dial-map-${p.site}.json`), '--json']
    for (const b of bootstrap) args.push('--bootstrap', b)
    // detached: its own process group, so stop() can kill it and anything it started
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
    const daemon: Daemon = { child, exited, stderr: [] }
    this.daemons.push(daemon)
    // each daemon's stderr (its DEBUG log) is kept whole in the testnet directory
    const logFile = createWriteStream(join(this.dir, `${p.name}.log`), { flags: 'a' })
    logFile.on('error', () => {})
    child.once('exit', () => { logFile.end() })
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      logFile.write(s)
      daemon.stderr.push(s)
      if (daemon.stderr.length > 50) daemon.stderr.shift()
    })
    const ready = await new Promise<{ api: string, peerId: string }>((resolve, reject) => {
      let out = ''
      const fail = (why: string): void => {
        cleanup()
        reject(new TestnetError(`daemon ${p.name} ${why}: ${daemon.stderr.join('').trim().slice(-2000)}`))
      }
      const onData = (s: string): void => {
        // the ready line is one JSON value, maybe pretty-printed over several lines
        out += s
        if (!out.trimEnd().endsWith('}')) return
        try {
          const line = JSON.parse(out)
          cleanup()
          resolve(line)
        } catch {
          if (out.length > 64 * 1024) fail(`printed a ready line that is not JSON (${out.slice(0, 200)})`)
        }
      }
      const onExit = (code: number | null): void => { fail(`exited (${code}) before it was ready`) }
      const onAbort = (): void => { fail('start aborted') }
      const timer = setTimeout(() => { fail(`not ready within ${timeoutMs} ms`) }, timeoutMs)
      const cleanup = (): void => {
        clearTimeout(timer)
        child.stdout?.off('data', onData)
        child.off('exit', onExit)
        signal?.removeEventListener('abort', onAbort)
      }
      child.stdout?.setEncoding('utf8').on('data', onData)
      child.once('exit', onExit)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
    // keep draining stdout so the daemon never blocks on a full pipe
    child.stdout?.resume()
    const api = await HttpApiClient.connect(ready.api, { token: await readApiToken(p.repo) })
    return { ...p, peerId, multiaddr, api, apiUrl: ready.api, pid: child.pid ?? -1 }
  }

  /** Poll every node's peers until each is connected to all others, or throw at the deadline. */
  private async waitForMesh (timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs
    const want = this.nodes.length - 1
    let missing: string[] = []
    while (true) {
      signal?.throwIfAborted()
      const seen = await Promise.all(this.nodes.map(async n => connectedPeers(await n.api.peers({ signal: AbortSignal.timeout(5000) }))))
      missing = this.nodes.filter((n, i) => seen[i] < want).map((n, i) => `${n.name} (${seen[i]}/${want})`)
      if (missing.length === 0) return
      log('waiting for peers: %s', missing.join(', '))
      if (Date.now() > deadline) throw new TestnetError(`nodes did not see all their peers within ${timeoutMs} ms: ${missing.join(', ')}`)
      await new Promise(resolve => setTimeout(resolve, 200))
    }
  }

  /** Nodes of one site, by name (`A`) or id (1). */
  site (site: string | number): TestnetNode[] {
    const name = typeof site === 'number' ? SITE_NAMES[site - 1] : site
    return this.nodes.filter(n => n.site === name)
  }

  /** Node by name (`B2`). */
  node (name: string): TestnetNode {
    const n = this.nodes.find(n => n.name === name)
    if (n == null) throw new TestnetError(`no node ${name}`)
    return n
  }

  /** The emulator's per-direction counters. */
  linkStats (): WanLinkStats[] {
    return this.wan.stats()
  }

  /** PIDs of the daemon processes this network started. */
  pids (): number[] {
    return this.daemons.map(d => d.child.pid ?? -1).filter(p => p > 0)
  }

  /** Stop every daemon (SIGTERM, then SIGKILL after the stop timeout), the emulator, and remove the temp dir. */
  async stop (): Promise<void> {
    this.stopping ??= this.doStop()
    return this.stopping
  }

  /** Kill every daemon at once (second Ctrl-C). */
  kill (): void {
    for (const d of this.daemons) killGroup(d.child, 'SIGKILL')
  }

  private async doStop (): Promise<void> {
    await Promise.all(this.nodes.map(async n => n.api.close().catch(() => {})))
    await Promise.all(this.daemons.map(async d => {
      if (d.child.exitCode != null || d.child.signalCode != null) return
      killGroup(d.child, 'SIGTERM')
      let timer: NodeJS.Timeout | undefined
      const timedOut = await Promise.race([
        d.exited.then(() => false),
        new Promise<boolean>(resolve => { timer = setTimeout(() => { resolve(true) }, this.stopTimeoutMs) })
      ])
      clearTimeout(timer)
      if (timedOut) {
        log('daemon %d did not stop in %d ms: SIGKILL', d.child.pid, this.stopTimeoutMs)
        killGroup(d.child, 'SIGKILL')
        await d.exited
      }
      // the group may hold children of the daemon
      killGroup(d.child, 'SIGKILL')
    }))
    await this.wan.close()
    process.off('exit', this.onExit)
    if (this.removeDir) await rm(this.dir, { recursive: true, force: true })
    log('testnet stopped')
  }
}

/** Number of peers a node is connected to. */
export function connectedPeers (peers: PeerSummary[]): number {
  return peers.filter(p => p.connected).length
}

/** Environment for a daemon: no repo from the caller's shell. */
export function childEnv (): NodeJS.ProcessEnv {
  const env = { ...process.env }
  delete env.MEMFABRIC_REPO
  return env
}

/** Run `memfabric ...args` and return its stdout; throws with its stderr on a non-zero exit. */
export async function runCli (args: string[], env: NodeJS.ProcessEnv = childEnv(), signal?: AbortSignal): Promise<string> {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'], signal })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', c => { resolve(c) })
  })
  if (code !== 0) throw new TestnetError(`memfabric ${args.join(' ')} exited ${code}: ${stderr.trim()}`)
  return stdout
}

/** True while a process with this pid exists. */
export function processAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err: any) {
    return err.code === 'EPERM'
  }
}

function killGroup (child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid == null) return
  try {
    process.kill(-child.pid, sig)
  } catch {
    try { child.kill(sig) } catch {}
  }
}

/** A port free on `ip` right now (bind to 0, read it, close). */
async function freePort (ip: string): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, ip, () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => { resolve(port) })
    })
  })
}

function checkInt (name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new TestnetError(`${name} must be an integer within ${min}..${max}, got ${value}`)
  return value
}
