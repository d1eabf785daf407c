/**
 * The parts of a QEMU migration that are QEMU's own: the `x-ignore-shared` capability, the
 * destination's `-incoming defer` listener, the device-state stream and its completion.
 */
import { logger } from '@libp2p/logger'
import type { QmpClient } from './qmp.ts'
import { DEFAULT_POLL_INTERVAL } from './constants.ts'
import { DeviceMigrationError, QmpCommandError, VmStateError } from './errors.ts'

const log = logger('memfabric:qemu')

/** Without it on both sides QEMU would send the RAM too, or the destination exits. */
export async function ignoreShared (qmp: QmpClient, options: { signal?: AbortSignal } = {}): Promise<void> {
  await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] }, options)
}

/** The QEMU's run state (`running`, `paused`, `inmigrate`, `postmigrate`...). */
export async function runState (qmp: QmpClient, options: { signal?: AbortSignal } = {}): Promise<string> {
  return (await qmp.execute<{ status: string }>('query-status', undefined, options)).status
}

/** Check a destination QEMU waits for a migration (`-incoming defer`) and prepare it. */
export async function prepareDestination (dst: QmpClient, options: { signal?: AbortSignal } = {}): Promise<void> {
  const status = await runState(dst, options)
  if (status !== 'inmigrate') {
    throw new VmStateError(`the destination QEMU is '${status}', not waiting for a migration: start it with -incoming defer`)
  }
  await ignoreShared(dst, options)
}

/** Open the destination's listener; resolves to the URI it really listens on (port 0 resolved). */
export async function listenIncoming (dst: QmpClient, uri: string, options: { signal?: AbortSignal } = {}): Promise<string> {
  const listening = async (): Promise<Array<{ type: string, host?: string, port?: string, path?: string }>> =>
    (await dst.execute<{ 'socket-address'?: Array<{ type: string, host?: string, port?: string, path?: string }> }>('query-migrate', undefined, options))['socket-address'] ?? []
  try {
    await dst.execute('migrate-incoming', { uri }, options)
  } catch (err) {
    // a previous attempt that failed before the device state left QEMU listening: reuse it
    const already = await listening().catch(() => [])
    const inet = already.find(a => a.type === 'inet')
    const unix = already.find(a => a.type === 'unix')
    if (!(err instanceof QmpCommandError) || (inet == null && unix == null)) throw err
    const actual = inet != null ? `tcp:${inet.host ?? '127.0.0.1'}:${inet.port}` : `unix:${unix?.path}`
    log('destination already listens for the device state on %s', actual)
    return actual
  }
  const m = /^tcp:(.+):0$/.exec(uri)
  if (m == null) return uri
  const inet = (await listening()).find(a => a.type === 'inet')
  if (inet?.port == null) throw new DeviceMigrationError(`the destination did not say which port it listens on for ${uri}; give a fixed port`)
  const actual = `tcp:${m[1]}:${inet.port}`
  log('destination listens for the device state on %s', actual)
  return actual
}

/**
 * Send the device state (the guest is stopped) and wait until QEMU says it completed; resolves
 * to the bytes sent. With `retry`, a failed attempt (the destination not listening yet: it
 * opens its listener only once the RAM it holds is verified) is tried again until the deadline.
 */
export async function sendDeviceState (src: QmpClient, uri: string, options: { signal?: AbortSignal, timeout: number, retry?: boolean }): Promise<number> {
  const deadline = Date.now() + options.timeout
  let attempts = 0
  while (true) {
    attempts++
    await src.execute('migrate', { uri }, options)
    let transferred = 0
    while (true) {
      options.signal?.throwIfAborted()
      const info = await src.execute<{ status?: string, 'error-desc'?: string, ram?: { transferred: number } }>('query-migrate', undefined, options)
      transferred = info.ram?.transferred ?? transferred
      if (info.status === 'completed') {
        log('device state sent to %s after %d attempt(s): %d bytes', uri, attempts, transferred)
        return transferred
      }
      if (info.status === 'failed' || info.status === 'cancelled') {
        const why = `QEMU's device-state migration to ${uri} ${info.status}: ${info['error-desc'] ?? 'no reason given'}`
        if (options.retry !== true || Date.now() > deadline) throw new DeviceMigrationError(why)
        log.trace('%s; trying again', why)
        break
      }
      if (Date.now() > deadline) {
        await src.execute('migrate_cancel').catch(() => {})
        throw new DeviceMigrationError(`QEMU's device-state migration to ${uri} did not complete within ${options.timeout} ms`)
      }
      await delay(DEFAULT_POLL_INTERVAL, options.signal)
    }
    await delay(10 * DEFAULT_POLL_INTERVAL, options.signal)
  }
}

/** Wait until the destination has loaded the device state (it leaves `inmigrate`). */
export async function waitLoaded (dst: QmpClient, options: { signal?: AbortSignal, timeout: number }): Promise<void> {
  const deadline = Date.now() + options.timeout
  while (true) {
    let status: string
    try {
      status = await runState(dst, options)
    } catch (err: any) {
      throw new DeviceMigrationError(`the destination QEMU failed while loading the device state: ${err.message}`, { cause: err })
    }
    if (status !== 'inmigrate') {
      if (status !== 'paused' && status !== 'running') throw new DeviceMigrationError(`the destination QEMU is '${status}' after the migration`)
      return
    }
    if (Date.now() > deadline) throw new DeviceMigrationError(`the destination did not load the device state within ${options.timeout} ms`)
    await delay(DEFAULT_POLL_INTERVAL, options.signal)
  }
}

export async function delay (ms: number, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => { clearTimeout(timer); reject(signal?.reason) }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
