/**
 * Migrating a running QEMU guest through the fabric.
 *
 * Guest RAM is a shared file (`-object memory-backend-file,…,share=on`). It travels through
 * memfabric: the source daemon's live migration re-imports the file in pre-copy rounds while
 * the guest runs and the destination pulls each changed page from the nearest holder. When the
 * rounds converge the daemon runs its pause hook, which asks this process to `stop` the guest
 * over QMP; the final round reads the file while the guest is stopped. The destination daemon
 * writes the final image to a staging file in its `out/` folder; it is installed in place into
 * the RAM file the destination QEMU maps (only differing pages are written, so the mapping
 * QEMU holds sees them), re-hashed by the destination's store and compared with the final
 * round's manifest root. Only then does the small device state travel through QEMU's own
 * migration stream (capability `x-ignore-shared`: shared RAM stays out of it), and the
 * destination resumes with `cont`.
 */
import { createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { mkdtemp, open, rm, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join, resolve } from 'node:path'
import { logger } from '@libp2p/logger'
import type { MemfabricApi, MigrationSummary, ProgressUpdate } from '../node/api/index.ts'
import { TIERS } from '../node/migration/index.ts'
import type { Tier, TierFigures } from '../node/migration/index.ts'
import { DEFAULT_MIGRATION_OUT_DIR } from '../node/constants.ts'
import { QmpClient } from './qmp.ts'
import {
  DEFAULT_DEVICE_MIGRATION_TIMEOUT, DEFAULT_INSTALL_CHUNK, DEFAULT_PAUSE_TIMEOUT, DEFAULT_POLL_INTERVAL,
  INSTALL_PAGE_SIZE
} from './constants.ts'
import { DeviceMigrationError, GuestRamError, RamVerificationError, VmStateError } from './errors.ts'

const log = logger('memfabric:qemu')

export interface QemuMigrationInit {
  /** The source node's api; must be a daemon (`online`). */
  source: Pick<MemfabricApi, 'migrate' | 'online'>
  /** The destination node's api, used to re-hash the delivered RAM before the guest resumes. */
  destination: Pick<MemfabricApi, 'importImage'>
  /** The destination repository directory: the final image is staged in its `out/` folder. */
  destRepo: string
  /** Source QEMU's QMP unix socket. */
  sourceQmp: string
  /** Destination QEMU's QMP unix socket (QEMU started with `-incoming defer`). */
  destQmp: string
  /** Destination peer: peer id or multiaddr. */
  to: string
  /** Source RAM file (default: the shared memory-backend-file the source QEMU maps). */
  ram?: string
  /** Destination RAM file (default: the shared memory-backend-file the destination QEMU maps). */
  destRam?: string
}

export interface QemuMigrateOptions {
  /** Image name (default: the RAM file's name). */
  name?: string
  /** Pre-copy rounds while the guest runs (default true); false stops the guest first. */
  live?: boolean
  /** Live: stop pre-copy once a round changes at most this many pages (daemon default). */
  minDirtyPages?: number
  /** Live: most pre-copy rounds (daemon default). */
  maxRounds?: number
  /**
   * QEMU migration URI the destination listens on for the device state (default
   * `tcp:127.0.0.1:0`; port 0 means any free port, read back from the destination).
   */
  incoming?: string
  /** Deadline of QEMU's device-state migration (ms). Default {@link DEFAULT_DEVICE_MIGRATION_TIMEOUT}. */
  deviceTimeout?: number
  /** Deadline of the pause hook once the daemon calls it (ms). Default {@link DEFAULT_PAUSE_TIMEOUT}. */
  pauseTimeout?: number
  /** Leave the destination paused instead of `cont` (the operator resumes it). */
  noResume?: boolean
  signal?: AbortSignal
  onProgress?(update: ProgressUpdate): void
  /** Called at each step (`precopy`, `paused`, `delivered`, `installed`, `verified`, `device-state`, `resumed`). */
  onPhase?(phase: QemuMigrationPhase, elapsedMs: number): void
}

export type QemuMigrationPhase = 'precopy' | 'paused' | 'delivered' | 'installed' | 'verified' | 'device-state' | 'resumed'

export interface QemuMigrationReport {
  name: string
  /** Manifest root of the RAM at the switch-over (the final round). */
  root: string
  /** Root the destination's store computed from the RAM file its QEMU maps, before resuming. */
  verifiedRoot: string
  ram: string
  destRam: string
  live: boolean
  size: number
  pages: number
  zeroPages: number
  rounds: number
  /** Pages and bytes per tier, summed over all rounds. */
  tiers: Record<Tier, TierFigures>
  /** Bytes received across sites, summed over all rounds. */
  wanBytes: number
  /** Pages the install wrote into the destination's RAM file (differing from what it held). */
  installedPages: number
  /** Bytes of QEMU's own migration stream (device state; shared RAM is not in it). */
  deviceStateBytes: number
  /** Guest stopped at the source → running at the destination (ms); absent with noResume. */
  downtimeMs?: number
  /** Where the downtime went (ms). */
  downtime: { finalRoundMs: number, installMs: number, verifyMs: number, deviceStateMs: number, resumeMs: number }
  durationMs: number
  resumed: boolean
  /** The fabric migration as the source daemon reported it (rounds included). */
  fabric: MigrationSummary
}

/** Migrate a QEMU guest whose RAM is a shared file to a destination QEMU through the fabric. */
export async function migrateQemu (init: QemuMigrationInit, options: QemuMigrateOptions = {}): Promise<QemuMigrationReport> {
  const started = performance.now()
  const { signal } = options
  const live = options.live ?? true
  const phase = (p: QemuMigrationPhase): void => {
    log('%s after %d ms', p, Math.round(performance.now() - started))
    options.onPhase?.(p, performance.now() - started)
  }
  if (!init.source.online) throw new VmStateError('migrating a QEMU guest needs the source daemon running (memfabric daemon)')

  const src = await QmpClient.connect(init.sourceQmp, { signal })
  let dst: QmpClient | undefined
  let hook: PauseHook | undefined
  let stoppedAt: number | undefined
  let resumed = false
  let wasRunning = false
  try {
    dst = await QmpClient.connect(init.destQmp, { signal })
    const ram = await sharedRamFile(src, init.ram, 'source', { signal })
    const destRam = await sharedRamFile(dst, init.destRam, 'destination', { signal })
    if (resolve(ram) === resolve(destRam)) throw new GuestRamError(`source and destination map the same RAM file ${ram}`)
    const srcStatus = await src.execute<{ status: string }>('query-status', undefined, { signal })
    const dstStatus = await dst.execute<{ status: string }>('query-status', undefined, { signal })
    if (dstStatus.status !== 'inmigrate') {
      throw new VmStateError(`the destination QEMU is '${dstStatus.status}', not waiting for a migration: start it with -incoming defer`)
    }
    if (srcStatus.status !== 'running' && srcStatus.status !== 'paused') {
      throw new VmStateError(`the source QEMU is '${srcStatus.status}'; it must be running or paused`)
    }
    wasRunning = srcStatus.status === 'running'
    // without x-ignore-shared on both sides QEMU would send the RAM too, or the destination exits
    for (const q of [src, dst]) {
      await q.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] }, { signal })
    }
    await dst.execute('migrate-incoming', { uri: options.incoming ?? 'tcp:127.0.0.1:0' }, { signal })
    const uri = await incomingUri(dst, options.incoming ?? 'tcp:127.0.0.1:0', { signal })
    log('destination listens for the device state on %s', uri)

    const name = options.name ?? basename(ram)
    const staging = `${name}.qemu-staging`
    const staged = join(resolve(init.destRepo), DEFAULT_MIGRATION_OUT_DIR, staging)

    const stop = async (): Promise<void> => {
      if (wasRunning) await src.execute('stop', undefined, { signal })
      stoppedAt ??= performance.now()
      phase('paused')
    }
    let fabric: MigrationSummary
    if (live) {
      hook = await PauseHook.create(stop, options.pauseTimeout ?? DEFAULT_PAUSE_TIMEOUT)
      phase('precopy')
      fabric = await init.source.migrate(ram, init.to, {
        live: true, pauseCommand: hook.command, name, out: staging,
        minDirtyPages: options.minDirtyPages, maxRounds: options.maxRounds,
        signal, onProgress: options.onProgress
      })
    } else {
      await stop()
      fabric = await init.source.migrate(ram, init.to, { name, out: staging, signal, onProgress: options.onProgress })
    }
    const stopped = stoppedAt
    if (stopped === undefined) throw new VmStateError('the daemon finished the live migration without pausing the guest')
    const delivered = performance.now()
    phase('delivered')

    const installedPages = await installRam(staged, destRam, { signal })
    await unlink(staged).catch(() => {})
    const installed = performance.now()
    phase('installed')

    const check = await init.destination.importImage(destRam, { name, signal })
    if (check.root !== fabric.root) {
      throw new RamVerificationError(`the destination's RAM file ${destRam} hashes to ${check.root}, not to the migrated image ${fabric.root}: not resuming`)
    }
    const verified = performance.now()
    phase('verified')

    const deviceStateBytes = await migrateDeviceState(src, dst, uri, { signal, timeout: options.deviceTimeout ?? DEFAULT_DEVICE_MIGRATION_TIMEOUT })
    const moved = performance.now()
    phase('device-state')

    let resumedAt: number | undefined
    if (options.noResume !== true) {
      await dst.execute('cont', undefined, { signal })
      resumedAt = performance.now()
      resumed = true
      phase('resumed')
    }

    const rounds = fabric.roundsDetail?.map(r => r.report) ?? [fabric]
    const tiers = Object.fromEntries(TIERS.map(t => [t, {
      pages: sum(rounds.map(r => r.tiers[t].pages)),
      bytes: sum(rounds.map(r => r.tiers[t].bytes)),
      wireBytes: sum(rounds.map(r => r.tiers[t].wireBytes))
    }])) as Record<Tier, TierFigures>
    return {
      name,
      root: fabric.root,
      verifiedRoot: check.root,
      ram,
      destRam,
      live,
      size: fabric.size,
      pages: fabric.pages,
      zeroPages: fabric.zeroPages,
      rounds: rounds.length,
      tiers,
      wanBytes: sum(rounds.map(r => r.wanBytes)),
      installedPages,
      deviceStateBytes,
      downtimeMs: resumedAt !== undefined ? resumedAt - stopped : undefined,
      downtime: {
        finalRoundMs: delivered - stopped,
        installMs: installed - delivered,
        verifyMs: verified - installed,
        deviceStateMs: moved - verified,
        resumeMs: resumedAt !== undefined ? resumedAt - moved : 0
      },
      durationMs: performance.now() - started,
      resumed,
      fabric
    }
  } catch (err) {
    if (stoppedAt !== undefined && !resumed && wasRunning) {
      // the guest must not stay down because the migration failed: resume it where it was
      log('migration failed after the guest stopped; resuming the source: %s', (err as Error).message)
      await src.execute('migrate_cancel').catch(() => {})
      await src.execute('cont').catch((e: Error) => { log.error('could not resume the source: %s', e.message) })
    }
    throw err
  } finally {
    await hook?.close()
    src.close()
    dst?.close()
  }
}

function sum (values: number[]): number {
  return values.reduce((a, b) => a + b, 0)
}

/**
 * The shared file-backed RAM a QEMU maps: checks `expected` when given, else finds the only one.
 * Private (`share=off`) RAM is refused: the guest's writes would never reach the file.
 */
export async function sharedRamFile (qmp: QmpClient, expected: string | undefined, side: string, options: { signal?: AbortSignal } = {}): Promise<string> {
  const objects = await qmp.execute<Array<{ name: string, type: string }>>('qom-list', { path: '/objects' }, options)
  const files: Array<{ id: string, path: string, share: boolean }> = []
  for (const o of objects) {
    if (o.type !== 'child<memory-backend-file>') continue
    const path = await qmp.execute<string>('qom-get', { path: `/objects/${o.name}`, property: 'mem-path' }, options)
    const share = await qmp.execute<boolean>('qom-get', { path: `/objects/${o.name}`, property: 'share' }, options)
    files.push({ id: o.name, path, share })
  }
  const match = expected !== undefined
    ? files.find(f => resolve(f.path) === resolve(expected))
    : (files.length === 1 ? files[0] : undefined)
  if (match == null) {
    const seen = files.map(f => f.path).join(', ')
    throw new GuestRamError(expected !== undefined
      ? `the ${side} QEMU does not map ${expected} as guest RAM (its memory-backend-file paths: ${seen === '' ? 'none' : seen})`
      : `cannot tell the ${side} QEMU's RAM file: ${files.length === 0 ? 'no memory-backend-file (start it with -object memory-backend-file,…,share=on -machine memory-backend=…)' : `several (${seen}); name it`}`)
  }
  if (!match.share) throw new GuestRamError(`the ${side} QEMU maps ${match.path} with share=off: guest writes never reach the file; start it with share=on`)
  return match.path
}

/** The URI the destination actually listens on (port 0 resolved). */
async function incomingUri (dst: QmpClient, requested: string, options: { signal?: AbortSignal }): Promise<string> {
  const m = /^tcp:(.+):0$/.exec(requested)
  if (m == null) return requested
  const info = await dst.execute<{ 'socket-address'?: Array<{ type: string, host?: string, port?: string }> }>('query-migrate', undefined, options)
  const inet = info['socket-address']?.find(a => a.type === 'inet')
  if (inet?.port == null) throw new DeviceMigrationError(`the destination did not say which port it listens on for ${requested}; give a fixed port`)
  return `tcp:${m[1]}:${inet.port}`
}

/** QEMU's own migration of the device state; resolves to the bytes it sent. */
async function migrateDeviceState (src: QmpClient, dst: QmpClient, uri: string, options: { signal?: AbortSignal, timeout: number }): Promise<number> {
  const deadline = Date.now() + options.timeout
  await src.execute('migrate', { uri }, options)
  let transferred = 0
  while (true) {
    options.signal?.throwIfAborted()
    const info = await src.execute<{ status?: string, 'error-desc'?: string, ram?: { transferred: number } }>('query-migrate', undefined, options)
    transferred = info.ram?.transferred ?? transferred
    if (info.status === 'completed') break
    if (info.status === 'failed' || info.status === 'cancelled') {
      throw new DeviceMigrationError(`QEMU's device-state migration ${info.status}: ${info['error-desc'] ?? 'no reason given'}`)
    }
    if (Date.now() > deadline) throw new DeviceMigrationError(`QEMU's device-state migration did not complete within ${options.timeout} ms`)
    await delay(DEFAULT_POLL_INTERVAL, options.signal)
  }
  // the destination has loaded it once it leaves `inmigrate`
  while (true) {
    let status: string
    try {
      status = (await dst.execute<{ status: string }>('query-status', undefined, options)).status
    } catch (err: any) {
      throw new DeviceMigrationError(`the destination QEMU failed while loading the device state: ${err.message}`, { cause: err })
    }
    if (status !== 'inmigrate') {
      if (status !== 'paused' && status !== 'running') throw new DeviceMigrationError(`the destination QEMU is '${status}' after the migration`)
      return transferred
    }
    if (Date.now() > deadline) throw new DeviceMigrationError(`the destination did not finish loading the device state within ${options.timeout} ms`)
    await delay(DEFAULT_POLL_INTERVAL, options.signal)
  }
}

/**
 * Copy the staged image into the destination's RAM file in place (the file QEMU maps with
 * share=on: replacing it would leave QEMU with the old inode). Writes only the pages that
 * differ; returns how many.
 */
export async function installRam (staged: string, target: string, options: { signal?: AbortSignal, chunk?: number } = {}): Promise<number> {
  const chunk = options.chunk ?? DEFAULT_INSTALL_CHUNK
  const [from, size] = await openSized(staged, 'r')
  let written = 0
  try {
    const [to, targetSize] = await openSized(target, 'r+')
    try {
      if (targetSize !== size) throw new GuestRamError(`the destination RAM file ${target} is ${targetSize} bytes, the migrated image ${size}: were both QEMUs started with the same -m / size=?`)
      const a = Buffer.allocUnsafeSlow(chunk)
      const b = Buffer.allocUnsafeSlow(chunk)
      for (let offset = 0; offset < size; offset += chunk) {
        options.signal?.throwIfAborted()
        const n = Math.min(chunk, size - offset)
        await readFull(from, a, n, offset)
        await readFull(to, b, n, offset)
        let run = -1
        for (let p = 0; p <= n; p += INSTALL_PAGE_SIZE) {
          const end = Math.min(p + INSTALL_PAGE_SIZE, n)
          const differs = p < n && a.compare(b, p, end, p, end) !== 0
          if (differs) {
            written++
            if (run < 0) run = p
          } else if (run >= 0) {
            await to.write(a, run, p - run, offset + run)
            run = -1
          }
        }
      }
      await to.datasync()
    } finally {
      await to.close()
    }
  } finally {
    await from.close()
  }
  log('installed %d changed pages into %s', written, target)
  return written
}

async function openSized (path: string, flags: string): Promise<[Awaited<ReturnType<typeof open>>, number]> {
  try {
    const fh = await open(path, flags)
    return [fh, (await fh.stat()).size]
  } catch (err: any) {
    throw new GuestRamError(`cannot open ${path}: ${err.code ?? err.message}`, { cause: err })
  }
}

async function readFull (fh: Awaited<ReturnType<typeof open>>, buf: Buffer, length: number, position: number): Promise<void> {
  let got = 0
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, position + got)
    if (bytesRead === 0) throw new GuestRamError(`short read at ${position + got}`)
    got += bytesRead
  }
}

async function delay (ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    signal?.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason) }, { once: true })
  })
}

/**
 * The daemon's pause hook, pointed back at this process: a unix socket we listen on and a
 * one-line Node client for the daemon to run as its pause command. The daemon runs it when
 * the pre-copy rounds converge; we stop the guest over our QMP connection (QEMU serves one
 * QMP client per socket) and answer `ok`, and the daemon runs the final round.
 */
class PauseHook {
  readonly command: string
  private readonly server: Server
  private readonly dir: string
  private readonly sockets = new Set<Socket>()

  private constructor (server: Server, dir: string, command: string) {
    this.server = server
    this.dir = dir
    this.command = command
  }

  static async create (pause: () => Promise<void>, timeout: number): Promise<PauseHook> {
    const dir = await mkdtemp(join(tmpdir(), 'memfabric-qemu-'))
    const path = join(dir, 'pause.sock')
    const server = createServer()
    const hook = new PauseHook(server, dir, pauseCommand(path, timeout))
    server.on('connection', (socket) => {
      hook.sockets.add(socket)
      socket.on('close', () => hook.sockets.delete(socket))
      socket.setEncoding('utf8')
      socket.setTimeout(timeout, () => socket.destroy())
      let line = ''
      socket.on('data', (chunk: string) => {
        line += chunk
        if (line.length > 64) { socket.destroy(); return }
        if (!line.includes('\n')) return
        pause().then(
          () => socket.end('ok\n'),
          (err: Error) => socket.end(`cannot pause the guest: ${err.message.replace(/\n/g, ' ')}\n`)
        )
      })
      socket.on('error', () => {})
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(path, () => { server.off('error', reject); resolve() })
    })
    return hook
  }

  async close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>(resolve => { this.server.close(() => { resolve() }) })
    await rm(this.dir, { recursive: true, force: true })
  }
}

/** A shell command that asks the hook at `path` to pause and exits 0 once it has. */
function pauseCommand (path: string, timeout: number): string {
  const script = `const s=require('net').connect(process.argv[1]);let b='';const t=setTimeout(()=>{console.error('pause hook: no answer');process.exit(3)},${timeout});` +
    `s.setEncoding('utf8');s.on('data',d=>{b+=d;const i=b.indexOf('\\n');if(i<0){if(b.length>4096)process.exit(4);return}clearTimeout(t);const l=b.slice(0,i);if(l==='ok')process.exit(0);console.error(l);process.exit(1)});` +
    `s.on('error',e=>{console.error('pause hook: '+e.message);process.exit(2)});s.write('pause\\n')`
  return [process.execPath, '-e', script, path].map(shellQuote).join(' ')
}

function shellQuote (s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}
