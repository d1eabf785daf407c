import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import { Repo } from '../store/repo.ts'
import { RepoLockedError } from '../store/errors.ts'
import { InvalidApiAddressError } from './errors.ts'
import { MemfabricNode } from './node.ts'
import type { MemfabricNodeInit } from './node.ts'
import { ApiBindError, ApiServer } from './api/http-server.ts'
import { NodeApi } from './api/node-api.ts'
import { API_FILE, readApiUrl } from './api/connect.ts'
import { createApiToken, removeApiToken, writeApiToken } from './api/token.ts'
import { isLoopbackHost } from './api/host-check.ts'
import { Registry } from 'prom-client'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { NodeMetrics, METRICS_PATH } from './metrics/index.ts'
import { StatusPage } from './status/index.ts'

const log = logger('memfabric:daemon')

export interface DaemonInit extends Omit<MemfabricNodeInit, 'repo'> {
  /** Repository directory. */
  repo: string
  /** Control API address as a multiaddr (default: the repo config's `addresses.api`). */
  api?: string
  /**
   * Bearer token the control API requires (default: a random one per start). Either way it is
   * written to `<repo>/api.token` (mode 0600), where CLI commands read it. Binding beyond
   * loopback needs an explicit one, so that remote callers hold a secret the operator chose.
   */
  apiToken?: string
  /** How long to wait for a repository locked by a CLI command (ms, default DEFAULT_DAEMON_LOCK_WAIT). */
  lockWait?: number
  /** Serve Prometheus metrics (libp2p's and memfabric's) at /metrics on the API (default false). */
  metrics?: boolean
}

/**
 * How long a starting daemon waits for a repository a CLI command holds (ms). A command
 * that started just before the daemon opened the repository directly; the daemon waits for
 * it instead of failing with "repository in use". Another daemon is never waited for.
 */
export const DEFAULT_DAEMON_LOCK_WAIT = 60_000

/** Poll interval while waiting for the repository lock (ms). */
const LOCK_POLL_INTERVAL = 100

export { InvalidApiAddressError }

/**
 * A node on a repository plus its control API on localhost; the API URL is written into the
 * repository so CLI commands find the daemon. `stop()` undoes `create()` in reverse order.
 */
export class Daemon {
  readonly repo: Repo
  readonly node: MemfabricNode
  readonly api: ApiServer
  readonly apiUrl: string
  /** The token every control API caller must send (also in `<repo>/api.token`). */
  readonly apiToken: string
  /** Set when the daemon serves /metrics. */
  readonly metrics?: NodeMetrics
  readonly status: StatusPage
  private stopping?: Promise<void>

  private constructor (repo: Repo, node: MemfabricNode, api: ApiServer, apiUrl: string, apiToken: string, status: StatusPage, metrics?: NodeMetrics) {
    this.repo = repo
    this.node = node
    this.api = api
    this.apiUrl = apiUrl
    this.apiToken = apiToken
    this.status = status
    this.metrics = metrics
  }

  static async create (init: DaemonInit): Promise<Daemon> {
    // a daemon exports pulled images on its own thread, in short batches: worker isolates
    // would add ~28 MB to it for the length of an export
    const repo = await openRepo(init.repo, init.lockWait ?? DEFAULT_DAEMON_LOCK_WAIT)
    let node: MemfabricNode | undefined
    let api: ApiServer | undefined
    let status: StatusPage | undefined
    try {
      const { host, port } = parseApiAddress(init.api ?? repo.config.addresses.api)
      if (!isLoopbackHost(host) && (init.apiToken == null || init.apiToken === '')) {
        throw new ApiBindError(`refusing to bind the control API to ${host} without a token (--api-token)`)
      }
      const token = init.apiToken ?? createApiToken()
      const registry = init.metrics === true ? new Registry() : undefined
      node = await MemfabricNode.create({ ...init, repo, libp2pMetrics: registry != null ? prometheusMetrics({ registry }) : undefined })
      const nodeApi = new NodeApi(node, () => api?.url ?? '')
      api = new ApiServer(nodeApi, { host, port, token })
      // after the node: prometheus-metrics clears its registry when libp2p starts
      const metrics = registry != null ? new NodeMetrics(node, { registry }) : undefined
      if (metrics != null) api.route(METRICS_PATH, metrics.handler)
      status = new StatusPage(node, { apiUrl: () => api?.url ?? '' })
      status.mount(api)
      const url = await api.listen()
      // the token first: a command that finds the URL must find its credential
      await writeApiToken(repo.path, token)
      await writeFile(join(repo.path, API_FILE), url + '\n')
      log('daemon on %s, API %s', repo.path, url)
      return new Daemon(repo, node, api, url, token, status, metrics)
    } catch (err) {
      status?.close()
      await api?.close()
      await node?.stop()
      await repo.close()
      throw err
    }
  }

  /** Stop serving: API file, API, node, repository (idempotent). */
  async stop (): Promise<void> {
    this.stopping ??= (async () => {
      const file = join(this.repo.path, API_FILE)
      const written = await readFile(file, 'utf8').catch(() => '')
      if (written.trim() === this.apiUrl) await rm(file, { force: true })
      await removeApiToken(this.repo.path, this.apiToken)
      this.status.close()
      await this.api.close()
      this.metrics?.close()
      await this.node.stop()
      await this.repo.close()
    })()
    await this.stopping
  }
}

/**
 * Open and lock the repository, waiting up to `wait` ms while a CLI command holds it. A lock
 * held by a daemon that answers is refused at once.
 */
async function openRepo (dir: string, wait: number): Promise<Repo> {
  const deadline = Date.now() + wait
  for (let attempt = 0; ; attempt++) {
    try {
      return await Repo.open(dir, { exportWorkers: false })
    } catch (err) {
      if (!(err instanceof RepoLockedError)) throw err
      const url = await readApiUrl(dir)
      if (url !== undefined && await answers(url)) {
        throw new RepoLockedError(`${err.message}: a daemon already serves it (control API ${url})`)
      }
      if (Date.now() >= deadline) throw err
      if (attempt === 0) log('repository %s is locked: %s; waiting up to %d ms', dir, err.message, wait)
    }
    await sleep(LOCK_POLL_INTERVAL)
  }
}

/** Something answers HTTP at `url` (the public status page needs no token). */
async function answers (url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/`, { signal: AbortSignal.timeout(1000) })
    await res.body?.cancel()
    return true
  } catch {
    return false
  }
}

function parseApiAddress (address: string): { host: string, port: number } {
  try {
    const parts = multiaddr(address).getComponents()
    const ip = parts.find(c => c.name === 'ip4' || c.name === 'ip6' || c.name === 'dns4' || c.name === 'dns')
    const tcp = parts.find(c => c.name === 'tcp')
    if (ip?.value == null || tcp?.value == null) throw new Error('needs an IP and a TCP port')
    return { host: ip.value, port: Number(tcp.value) }
  } catch (err: any) {
    throw new InvalidApiAddressError(`invalid control API address ${address}: ${err.message}`)
  }
}
