/**
 * `connectApi`: the api for a repository — the daemon holding it when one answers on the
 * control API address it wrote to `<repo>/api`, otherwise the repository opened directly.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { StoreOptions } from '../../store/options.ts'
import type { MemfabricApi } from './index.ts'

/** File a running daemon writes its control API URL into (Kubo-style). */
export const API_FILE = 'api'

/** How long a daemon has to answer before the CLI falls back to the repo (ms). */
export const DEFAULT_CONNECT_TIMEOUT = 3000

export interface ConnectOptions {
  signal?: AbortSignal
  /** Never try a daemon; open the repository directly. Default false. */
  offline?: boolean
  /** Bearer token for a daemon whose API needs one. Default none. */
  token?: string
  /** Default {@link DEFAULT_CONNECT_TIMEOUT}. */
  timeout?: number
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

/** The daemon's api when it answers, else a `LocalApi` on the repository (which takes its lock). */
export async function connectApi (repoDir: string, options: ConnectOptions = {}): Promise<MemfabricApi> {
  options.signal?.throwIfAborted()
  const url = options.offline === true ? undefined : await readApiUrl(repoDir)
  if (url !== undefined) {
    try {
      // the module is loaded only when a daemon may be running (keeps offline commands light)
      const clientModule = './http-client.ts'
      const { HttpApiClient } = await import(clientModule)
      return await HttpApiClient.connect(url, { token: options.token, timeout: options.timeout ?? DEFAULT_CONNECT_TIMEOUT })
    } catch (err: any) {
      options.signal?.throwIfAborted()
      // a stale `api` file (daemon killed) must not block offline use: fall through
      if (err?.name !== 'TimeoutError' && err?.code !== 'ERR_DAEMON_UNREACHABLE' && err?.code !== 'ERR_MODULE_NOT_FOUND') {
        throw err
      }
    }
  }
  const { LocalApi } = await import('./local.ts')
  return await LocalApi.open(repoDir, options.store)
}
