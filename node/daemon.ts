import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import { Repo } from '../store/repo.ts'
import { InvalidApiAddressError } from './errors.ts'
import { MemfabricNode } from './node.ts'
import type { MemfabricNodeInit } from './node.ts'
import { ApiServer } from './api/http-server.ts'
import { NodeApi } from './api/node-api.ts'
import { API_FILE } from './api/connect.ts'
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
  /** Bearer token the control API requires (needed to bind beyond loopback). */
  apiToken?: string
  /** Serve Prometheus metrics (libp2p's and memfabric's) at /metrics on the API (default false). */
  metrics?: boolean
}

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
  /** Set when the daemon serves /metrics. */
  readonly metrics?: NodeMetrics
  readonly status: StatusPage
  private stopping?: Promise<void>

  private constructor (repo: Repo, node: MemfabricNode, api: ApiServer, apiUrl: string, status: StatusPage, metrics?: NodeMetrics) {
    this.repo = repo
    this.node = node
    this.api = api
    this.apiUrl = apiUrl
    this.status = status
    this.metrics = metrics
  }

  static async create (init: DaemonInit): Promise<Daemon> {
    // a daemon exports pulled images on its own thread, in short batches: worker isolates
    // would add ~28 MB to it for the length of an export
    const repo = await Repo.open(init.repo, { exportWorkers: false })
    let node: MemfabricNode | undefined
    let api: ApiServer | undefined
    let status: StatusPage | undefined
    try {
      const { host, port } = parseApiAddress(init.api ?? repo.config.addresses.api)
      const registry = init.metrics === true ? new Registry() : undefined
      node = await MemfabricNode.create({ ...init, repo, libp2pMetrics: registry != null ? prometheusMetrics({ registry }) : undefined })
      const nodeApi = new NodeApi(node, () => api?.url ?? '')
      api = new ApiServer(nodeApi, { host, port, token: init.apiToken })
      // after the node: prometheus-metrics clears its registry when libp2p starts
      const metrics = registry != null ? new NodeMetrics(node, { registry }) : undefined
      if (metrics != null) api.route(METRICS_PATH, metrics.handler)
      status = new StatusPage(node, { apiUrl: () => api?.url ?? '' })
      status.mount(api)
      const url = await api.listen()
      await writeFile(join(repo.path, API_FILE), url + '\n')
      log('daemon on %s, API %s', repo.path, url)
      return new Daemon(repo, node, api, url, status, metrics)
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
      this.status.close()
      await this.api.close()
      this.metrics?.close()
      await this.node.stop()
      await this.repo.close()
    })()
    await this.stopping
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
