/**
 * Migrating a running QEMU guest through the fabric (source side).
 *
 * Guest RAM is a shared file (`-object memory-backend-file,…,share=on`). It travels through
 * memfabric: the source daemon's live migration re-imports the file in pre-copy rounds while
 * the guest runs and the destination pulls each changed page from the nearest holder. When the
 * rounds converge the daemon calls back this process (the live migration's `pause`), which
 * `stop`s the guest over QMP; the final round reads the file while the guest is stopped. The
 * destination daemon writes the final image to a staging file in its `out/` folder; it is
 * installed in place into the RAM file the destination QEMU maps (only differing pages are
 * written, so the mapping QEMU holds sees them), re-hashed by the destination's store and
 * compared with the final round's manifest root. Only then does the small device state travel
 * through QEMU's own migration stream (`x-ignore-shared`: shared RAM stays out of it), and the
 * destination resumes with `cont`.
 *
 * With `destQmp` the destination steps run here (both QEMUs reachable from this host). Without
 * it they run in `receiveQemu` on the destination host, and this side only sends the device
 * state to `incoming` once the receiver, having verified the RAM, listens there.
 */
import { basename, resolve } from 'node:path'
import { logger } from '@libp2p/logger'
import type { MemfabricApi, MigrationSummary, ProgressUpdate } from '../node/api/index.ts'
import { TIERS } from '../node/migration/index.ts'
import type { Tier, TierFigures } from '../node/migration/index.ts'
import { QmpClient } from './qmp.ts'
import { sharedRamFile } from './ram.ts'
import { installVerified, stagingName, stagingPath } from './receive.ts'
import { ignoreShared, listenIncoming, prepareDestination, runState, sendDeviceState, waitLoaded } from './device-state.ts'
import { DEFAULT_DEVICE_MIGRATION_TIMEOUT, DEFAULT_INCOMING, DEFAULT_PAUSE_TIMEOUT } from './constants.ts'
import { GuestRamError, VmStateError } from './errors.ts'

const log = logger('memfabric:qemu')

export interface QemuMigrationInit {
  /** The source node's api; must be a daemon (`online`). */
  source: Pick<MemfabricApi, 'migrate' | 'online'>
  /** Source QEMU's QMP unix socket. */
  sourceQmp: string
  /** Destination peer: peer id or multiaddr. */
  to: string
  /** Source RAM file (default: the shared memory-backend-file the source QEMU maps). */
  ram?: string
  /**
   * Destination QEMU's QMP unix socket (QEMU started with `-incoming defer`). Without it a
   * `receiveQemu` on the destination host does the destination's steps.
   */
  destQmp?: string
  /** With destQmp: the destination node's api, to re-hash the delivered RAM before resuming. */
  destination?: Pick<MemfabricApi, 'importImage'>
  /** With destQmp: the destination repository directory (the final image is staged in its `out/`). */
  destRepo?: string
  /** With destQmp: destination RAM file (default: the shared memory-backend-file it maps). */
  destRam?: string
}

export interface QemuMigrateOptions {
  /** Image name (default: the RAM file's name). A receiver must be given the same. */
  name?: string
  /** Pre-copy rounds while the guest runs (default true); false stops the guest first. */
  live?: boolean
  /** Live: stop pre-copy once a round changes at most this many pages (daemon default). */
  minDirtyPages?: number
  /** Live: most pre-copy rounds (daemon default). */
  maxRounds?: number
  /**
   * QEMU migration URI for the device state: with destQmp, where the destination listens
   * (default {@link DEFAULT_INCOMING}, port 0 = any free port); without, the receiver's (required).
   */
  incoming?: string
  /** Deadline of QEMU's device-state migration (ms). Default {@link DEFAULT_DEVICE_MIGRATION_TIMEOUT}. */
  deviceTimeout?: number
  /** Deadline of the guest's `stop` once the daemon calls back to pause it (ms). Default {@link DEFAULT_PAUSE_TIMEOUT}. */
  pauseTimeout?: number
  /** With destQmp: leave the destination paused instead of `cont` (the operator resumes it). */
  noResume?: boolean
  signal?: AbortSignal
  onProgress?(update: ProgressUpdate): void
  /** Called at each step. */
  onPhase?(phase: QemuMigrationPhase, elapsedMs: number): void
}

export type QemuMigrationPhase = 'precopy' | 'paused' | 'delivered' | 'verified' | 'device-state' | 'resumed'

export interface QemuMigrationReport {
  name: string
  /** Manifest root of the RAM at the switch-over (the final round, read while the guest was stopped). */
  root: string
  /** With destQmp: the root the destination's store computed from its RAM file before resuming. */
  verifiedRoot?: string
  ram: string
  destRam?: string
  live: boolean
  size: number
  pages: number
  zeroPages: number
  rounds: number
  /** Pages and bytes per tier, summed over all rounds. */
  tiers: Record<Tier, TierFigures>
  /** Bytes received across sites, summed over all rounds. */
  wanBytes: number
  /** With destQmp: pages the install wrote into the destination's RAM file. */
  installedPages?: number
  /** Bytes of QEMU's own migration stream (device state; shared RAM is not in it). */
  deviceStateBytes: number
  /**
   * Guest stopped at the source → running at the destination (ms). Without destQmp: stopped →
   * device state delivered (the receiver resumes right after); absent with noResume.
   */
  downtimeMs?: number
  /** Where the downtime went (ms); install and verify are the receiver's without destQmp. */
  downtime: { finalRoundMs: number, installMs?: number, verifyMs?: number, deviceStateMs: number, resumeMs?: number }
  durationMs: number
  /** The destination runs the guest: `here` (destQmp), `receiver`, or `no` (noResume). */
  resumedBy: 'here' | 'receiver' | 'no'
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
  const here = init.destQmp !== undefined
  if (here && (init.destination === undefined || init.destRepo === undefined)) {
    throw new VmStateError('driving the destination QEMU from here needs the destination repository (destRepo) and its api')
  }
  if (!here && options.incoming === undefined) {
    throw new VmStateError('without the destination\'s QMP socket, give the URI its receiver listens on (incoming)')
  }

  const src = await QmpClient.connect(init.sourceQmp, { signal })
  let dst: QmpClient | undefined
  let stoppedAt: number | undefined
  let sent = false
  let wasRunning = false
  try {
    const ram = await sharedRamFile(src, init.ram, 'source', { signal })
    const srcStatus = await runState(src, { signal })
    if (srcStatus !== 'running' && srcStatus !== 'paused') {
      throw new VmStateError(`the source QEMU is '${srcStatus}'; it must be running or paused`)
    }
    wasRunning = srcStatus === 'running'
    await ignoreShared(src, { signal })
    let destRam: string | undefined
    let uri = options.incoming ?? DEFAULT_INCOMING
    if (init.destQmp !== undefined) {
      dst = await QmpClient.connect(init.destQmp, { signal })
      await prepareDestination(dst, { signal })
      destRam = await sharedRamFile(dst, init.destRam, 'destination', { signal })
      if (resolve(ram) === resolve(destRam)) throw new GuestRamError(`source and destination map the same RAM file ${ram}`)
      // listening early is safe: nothing is sent before the RAM is verified
      uri = await listenIncoming(dst, uri, { signal })
    }

    const name = options.name ?? basename(ram)
    const stop = async (timeout?: number): Promise<void> => {
      if (wasRunning) await src.execute('stop', undefined, { signal, timeout })
      stoppedAt ??= performance.now()
      phase('paused')
    }
    let fabric: MigrationSummary
    if (live) {
      const pause = async (): Promise<void> => { await stop(options.pauseTimeout ?? DEFAULT_PAUSE_TIMEOUT) }
      phase('precopy')
      // absolute: the daemon takes a file REF only by its absolute path
      fabric = await init.source.migrate(resolve(ram), init.to, {
        live: true, pause, name, out: stagingName(name),
        minDirtyPages: options.minDirtyPages, maxRounds: options.maxRounds,
        signal, onProgress: options.onProgress
      })
    } else {
      await stop()
      fabric = await init.source.migrate(resolve(ram), init.to, { name, out: stagingName(name), signal, onProgress: options.onProgress })
    }
    const stopped = stoppedAt
    if (stopped === undefined) throw new VmStateError('the daemon finished the live migration without pausing the guest')
    const delivered = performance.now()
    phase('delivered')

    let installed: Awaited<ReturnType<typeof installVerified>> | undefined
    if (dst !== undefined && init.destination !== undefined && init.destRepo !== undefined && destRam !== undefined) {
      installed = await installVerified(init.destination, stagingPath(init.destRepo, name), destRam, name, async () => fabric.root, { signal })
      phase('verified')
    }
    const beforeDevice = performance.now()
    const deviceTimeout = options.deviceTimeout ?? DEFAULT_DEVICE_MIGRATION_TIMEOUT
    const deviceStateBytes = await sendDeviceState(src, uri, { signal, timeout: deviceTimeout, retry: dst === undefined })
    sent = true
    if (dst !== undefined) await waitLoaded(dst, { signal, timeout: deviceTimeout })
    const moved = performance.now()
    phase('device-state')

    let resumedAt: number | undefined
    if (dst !== undefined && options.noResume !== true) {
      await dst.execute('cont', undefined, { signal })
      resumedAt = performance.now()
      phase('resumed')
    }

    const rounds = fabric.roundsDetail?.map(r => r.report) ?? [fabric]
    const tiers = Object.fromEntries(TIERS.map(t => [t, {
      pages: sum(rounds.map(r => r.tiers[t].pages)),
      bytes: sum(rounds.map(r => r.tiers[t].bytes)),
      wireBytes: sum(rounds.map(r => r.tiers[t].wireBytes))
    }])) as Record<Tier, TierFigures>
    const resumedBy = dst === undefined ? 'receiver' : resumedAt !== undefined ? 'here' : 'no'
    return {
      name,
      root: fabric.root,
      verifiedRoot: installed?.root,
      ram,
      destRam,
      live,
      size: fabric.size,
      pages: fabric.pages,
      zeroPages: fabric.zeroPages,
      rounds: rounds.length,
      tiers,
      wanBytes: sum(rounds.map(r => r.wanBytes)),
      installedPages: installed?.installedPages,
      deviceStateBytes,
      downtimeMs: resumedBy === 'no' ? undefined : (resumedAt ?? moved) - stopped,
      downtime: {
        finalRoundMs: delivered - stopped,
        installMs: installed?.installMs,
        verifyMs: installed?.verifyMs,
        deviceStateMs: moved - beforeDevice,
        resumeMs: resumedAt !== undefined ? resumedAt - moved : undefined
      },
      durationMs: performance.now() - started,
      resumedBy,
      fabric
    }
  } catch (err) {
    if (stoppedAt !== undefined && !sent && wasRunning) {
      // the guest must not stay down because the migration failed: resume it where it was
      log('migration failed after the guest stopped; resuming the source: %s', (err as Error).message)
      await src.execute('migrate_cancel').catch(() => {})
      await src.execute('cont').catch((e: Error) => { log.error('could not resume the source: %s', e.message) })
    }
    throw err
  } finally {
    src.close()
    dst?.close()
  }
}

function sum (values: number[]): number {
  return values.reduce((a, b) => a + b, 0)
}
