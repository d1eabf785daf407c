/**
 * The destination side of a QEMU migration, for when the two QEMUs run on different hosts:
 * `receiveQemu` runs next to the destination QEMU (started with `-incoming defer`) and its
 * memfabric daemon. It waits for the final image the source's live migration stages in
 * `<repo>/out/<name>.qemu-staging`, installs it in place into the RAM file QEMU maps, re-hashes
 * that file through its store and compares the root with the image the migration named
 * `<name>`; only then does it open QEMU's device-state listener, and once QEMU has loaded the
 * device state it resumes the guest. A destination that cannot verify never listens, so the
 * source gives up and resumes its own guest.
 */
import { access, unlink } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { logger } from '@libp2p/logger'
import type { MemfabricApi } from '../node/api/index.ts'
import { DEFAULT_MIGRATION_OUT_DIR } from '../node/constants.ts'
import { QmpClient } from './qmp.ts'
import { installRam, sharedRamFile } from './ram.ts'
import { delay, listenIncoming, prepareDestination, waitLoaded } from './device-state.ts'
import { DEFAULT_DEVICE_MIGRATION_TIMEOUT, DEFAULT_RECEIVE_TIMEOUT, STAGING_SUFFIX } from './constants.ts'
import { RamVerificationError, VmStateError } from './errors.ts'

const log = logger('memfabric:qemu')

/** Where the destination daemon writes the final image of the migration named `name`. */
export function stagingPath (destRepo: string, name: string): string {
  return join(resolve(destRepo), DEFAULT_MIGRATION_OUT_DIR, `${name}${STAGING_SUFFIX}`)
}

/** The staging file's name relative to the destination's `out/` folder (the offer's `out`). */
export function stagingName (name: string): string {
  return `${name}${STAGING_SUFFIX}`
}

export interface InstallVerifiedResult {
  root: string
  installedPages: number
  installMs: number
  verifyMs: number
}

/**
 * Write the staged image into the RAM file in place, drop the staging file, and have the
 * destination's store re-hash the RAM file: its root must be `expected`.
 */
export async function installVerified (destination: Pick<MemfabricApi, 'importImage'>, staged: string, destRam: string, name: string, expected: () => Promise<string>, options: { signal?: AbortSignal } = {}): Promise<InstallVerifiedResult> {
  const t0 = performance.now()
  const installedPages = await installRam(staged, destRam, options)
  await unlink(staged).catch(() => {})
  const t1 = performance.now()
  const check = await destination.importImage(destRam, { name, signal: options.signal })
  const want = await expected()
  if (check.root !== want) {
    throw new RamVerificationError(`the destination's RAM file ${destRam} hashes to ${check.root}, not to the migrated image ${want}: not resuming`)
  }
  return { root: check.root, installedPages, installMs: t1 - t0, verifyMs: performance.now() - t1 }
}

export interface QemuReceiveInit {
  /** The destination node's api (its daemon). */
  destination: Pick<MemfabricApi, 'importImage' | 'inspect' | 'online'>
  /** The destination repository directory (the staging file appears in its `out/`). */
  destRepo: string
  /** Destination QEMU's QMP socket (QEMU started with `-incoming defer`). */
  qmp: string
  /** Image name, the same the source migrates under. */
  name: string
  /** RAM file (default: the shared memory-backend-file QEMU maps). */
  ram?: string
}

export interface QemuReceiveOptions {
  /** QEMU migration URI to listen on for the device state, e.g. `tcp:0.0.0.0:4444`. */
  incoming: string
  /** How long to wait for the migration to deliver the RAM (ms). Default {@link DEFAULT_RECEIVE_TIMEOUT}. */
  timeout?: number
  /** Deadline of the device state once listening (ms). Default {@link DEFAULT_DEVICE_MIGRATION_TIMEOUT}. */
  deviceTimeout?: number
  /** Leave the guest paused after loading (the operator resumes it with QMP cont). */
  noResume?: boolean
  signal?: AbortSignal
  /** Called once waiting for the migration (the source may start now). */
  onReady?(): void
}

export interface QemuReceiveReport {
  name: string
  root: string
  ram: string
  installedPages: number
  /** RAM delivered → guest running here (ms): the destination's share of the downtime. */
  deliveredToResumedMs?: number
  downtime: { installMs: number, verifyMs: number, deviceStateMs: number, resumeMs: number }
  resumed: boolean
}

/** Wait for a migration to this host, verify the RAM, load the device state, resume. */
export async function receiveQemu (init: QemuReceiveInit, options: QemuReceiveOptions): Promise<QemuReceiveReport> {
  const { signal } = options
  if (!init.destination.online) throw new VmStateError('receiving a QEMU guest needs the destination daemon running (memfabric daemon)')
  const dst = await QmpClient.connect(init.qmp, { signal })
  try {
    await prepareDestination(dst, { signal })
    const ram = await sharedRamFile(dst, init.ram, 'destination', { signal })
    const staged = stagingPath(init.destRepo, init.name)
    await unlink(staged).catch(() => {})
    options.onReady?.()
    log('waiting for %s', staged)
    const deadline = Date.now() + (options.timeout ?? DEFAULT_RECEIVE_TIMEOUT)
    while (!(await exists(staged))) {
      if (Date.now() > deadline) throw new VmStateError(`no migration delivered ${init.name} within ${options.timeout ?? DEFAULT_RECEIVE_TIMEOUT} ms`)
      // the QEMU must still be there
      await dst.execute('query-status', undefined, { signal })
      await delay(50, signal)
    }
    const delivered = performance.now()
    const installed = await installVerified(init.destination, staged, ram, init.name,
      async () => (await init.destination.inspect(init.name, { signal })).root, { signal })
    const verified = performance.now()
    await listenIncoming(dst, options.incoming, { signal })
    await waitLoaded(dst, { signal, timeout: options.deviceTimeout ?? DEFAULT_DEVICE_MIGRATION_TIMEOUT })
    const loaded = performance.now()
    let resumedAt: number | undefined
    if (options.noResume !== true) {
      await dst.execute('cont', undefined, { signal })
      resumedAt = performance.now()
    }
    return {
      name: init.name,
      root: installed.root,
      ram,
      installedPages: installed.installedPages,
      deliveredToResumedMs: resumedAt !== undefined ? resumedAt - delivered : undefined,
      downtime: { installMs: installed.installMs, verifyMs: installed.verifyMs, deviceStateMs: loaded - verified, resumeMs: resumedAt !== undefined ? resumedAt - loaded : 0 },
      resumed: resumedAt !== undefined
    }
  } finally {
    dst.close()
  }
}

async function exists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}
