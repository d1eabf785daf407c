/**
 * `connectApi`: the api for a repository — the daemon holding it when one answers on the
 * control API address it wrote to `<repo>/api` (with the token of `<repo>/api.token`),
 * otherwise the repository opened directly.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { StoreOptions } from '../../store/options.ts'
import type { MemfabricApi } from './index.ts'
import { readApiToken } from './token.ts'

/** File a running daemon writes its control API URL into (Kubo-style). */
export const API_FILE = 'api'

/** How long a daemon has to answer before the CLI falls back to the repo (ms). */
export const DEFAULT_CONNECT_TIMEOUT = 3000

/**
 * How long a command waits for a repository another process has locked (ms): a daemon holds
 * the lock from before its API listens, so a command started meanwhile finds the lock but not
 * yet the `api` file; it waits for one or the other.
 */
export const DEFAULT_LOCK_WAIT = 15_000

/** Poll interval while waiting for a locked repository (ms). */
const LOCK_POLL_INTERVAL = 100

export interface ConnectOptions {
  signal?: AbortSignal
  /** Never try a daemon; open the repository directly. Default false. */
  offline?: boolean
  /** Bearer token for the daemon. Default: the one in `<repo>/api.token`. */
  token?: string
  /** Default {@link DEFAULT_CONNECT_TIMEOUT}. */
  timeout?: number
  /** Default {@link DEFAULT_LOCK_WAIT}. */
  lockWait?: number
  /** Passed to the store when the repository is opened directly. */
  store?: StoreOptions
}

/** The control API URL a daemon left in `repoDir`, if any. */
export async function readApiUrl (repoDir: string): Promise<string | undefined> {
  let text: string
  try {
    text = await readFile(join(repoDir, API_FILE), 'utf8')
  } catch {
    return undefined
  }
  const url = text.split('\n').map(s => s.trim()).find(s => s !== '')
  return url
}

/** The daemon's api when one answers on the repository's `api` file. */
async function daemonApi (repoDir: string, options: ConnectOptions): Promise<MemfabricApi | undefined> {
  const url = options.offline === true ? undefined : await readApiUrl(repoDir)
  if (url === undefined) return undefined
  try {
    // the module is loaded only when a daemon may be running (keeps offline commands light)
    const clientModule = './http-client.ts'
    const { HttpApiClient } = await import(clientModule)
    const token = options.token ?? await readApiToken(repoDir)
    return await HttpApiClient.connect(url, { token, timeout: options.timeout ?? DEFAULT_CONNECT_TIMEOUT })
  } catch (err: any) {
    options.signal?.throwIfAborted()
    // a stale `api` file (daemon killed) must not block offline use: fall through
    if (err?.name !== 'TimeoutError' && err?.code !== 'ERR_DAEMON_UNREACHABLE' && err?.code !== 'ERR_MODULE_NOT_FOUND') {
      throw err
    }
    return undefined
  }
}

/** The daemon's api when it answers, else a `LocalApi` on the repository (which takes its lock). */
export async function connectApi (repoDir: string, options: ConnectOptions = {}): Promise<MemfabricApi> {
  const deadline = Date.now() + (options.lockWait ?? DEFAULT_LOCK_WAIT)
  while (true) {
    options.signal?.throwIfAborted()
    const daemon = await daemonApi(repoDir, options)
    if (daemon !== undefined) return daemon
    const { LocalApi } = await import('./local.ts')
    try {
      return await LocalApi.open(repoDir, options.store)
    } catch (err: any) {
      if (err?.code !== 'ERR_REPO_LOCKED' || Date.now() >= deadline) throw err
    }
    await sleep(LOCK_POLL_INTERVAL, undefined, { signal: options.signal })
  }
}
