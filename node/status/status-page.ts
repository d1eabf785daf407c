import { readFile } from 'node:fs/promises'
import type http from 'node:http'
import { logger } from '@libp2p/logger'
import type { Holder } from '../migration/index.ts'
import type { Store, StoreStats } from '../../store/index.ts'
import type { MigrationEntry, MigrationRegistry } from '../migrations.ts'
import type { RouteHandler, RouteOptions } from '../api/http-server.ts'
import { DEFAULT_IDLE_PUSH_INTERVAL, DEFAULT_PUSH_INTERVAL } from './constants.ts'

const log = logger('memfabric:status')

/** What the page shows of a node: narrow, so any node (or a test double) can feed it. */
export interface StatusNode {
  readonly site: string
  readonly peerId: { toString(): string }
  readonly repo: { readonly store: Store }
  readonly migrations: MigrationRegistry
  readonly libp2p: {
    getMultiaddrs(): Array<{ toString(): string }>
    getConnections(peer?: any): Array<{ remoteAddr: { toString(): string } }>
  }
  peers(): Holder[]
}

export interface StatusPageInit {
  /** The API URL, shown on the page (default: none). */
  apiUrl?: () => string
  /** Least time between pushed snapshots while migrations move (default DEFAULT_PUSH_INTERVAL). */
  pushInterval?: number
  /** Push interval when nothing moves (default DEFAULT_IDLE_PUSH_INTERVAL). */
  idlePushInterval?: number
}

export interface StatusSnapshot {
  time: number
  node: { peerId: string, site: string, addresses: string[], api?: string }
  peers: Array<{ peerId: string, site?: string, rttMs?: number, addresses: string[] }>
  store?: StoreStats
  migrations: MigrationEntry[]
}

const ASSETS: Record<string, { file: string, type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/status.js': { file: 'status.js', type: 'text/javascript; charset=utf-8' },
  '/status.css': { file: 'status.css', type: 'text/css; charset=utf-8' }
}

// the headers every answer carries: the page may only load itself
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer'
}

/** Serves the page, its snapshot and the event stream of one node. */
export class StatusPage {
  private readonly node: StatusNode
  private readonly init: StatusPageInit
  private readonly clients = new Set<http.ServerResponse>()
  private pushTimer?: ReturnType<typeof setTimeout>
  private idleTimer?: ReturnType<typeof setInterval>
  private lastPush = 0
  private readonly onChange = (): void => { this.schedule() }

  constructor (node: StatusNode, init: StatusPageInit = {}) {
    this.node = node
    this.init = init
  }

  /**
   * Mount the routes on an ApiServer (anything with `route(path, handler, options)`). The page's
   * files are constant and public; its data (`/status.json`, `/events`) needs the API token,
   * which the page reads from its URL fragment (`/#token=…`, never sent to a server).
   */
  mount (server: { route(path: string, handler: RouteHandler, options?: RouteOptions): void }): void {
    for (const [path, asset] of Object.entries(ASSETS)) {
      server.route(path, async (_req, res) => { await this.asset(asset, res) }, { public: true })
    }
    server.route('/status.json', async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', ...SECURITY_HEADERS })
      res.end(JSON.stringify(await this.snapshot()))
    })
    server.route('/events', async (req, res) => { await this.events(req, res) })
  }

  /** Everything the page shows, as JSON. */
  async snapshot (): Promise<StatusSnapshot> {
    const node = this.node
    let store: StoreStats | undefined
    try {
      store = await node.repo.store.stats()
    } catch (err) {
      log('store stats failed - %e', err)
    }
    return {
      time: Date.now(),
      node: {
        peerId: node.peerId.toString(),
        site: node.site,
        addresses: node.libp2p.getMultiaddrs().map(String),
        api: this.init.apiUrl?.()
      },
      peers: node.peers().map(p => ({
        peerId: p.peerId.toString(),
        site: p.site,
        rttMs: p.rttMs,
        addresses: node.libp2p.getConnections(p.peerId).map(c => c.remoteAddr.toString())
      })),
      store,
      migrations: node.migrations.list()
    }
  }

  /** End every event stream and stop pushing (idempotent). */
  close (): void {
    clearTimeout(this.pushTimer)
    clearInterval(this.idleTimer)
    this.pushTimer = undefined
    this.idleTimer = undefined
    this.node.migrations.removeEventListener('change', this.onChange)
    for (const res of this.clients) res.end()
    this.clients.clear()
  }

  private async asset (asset: { file: string, type: string }, res: http.ServerResponse): Promise<void> {
    const body = await readFile(new URL(`./page/${asset.file}`, import.meta.url))
    res.writeHead(200, { 'content-type': asset.type, 'cache-control': 'no-cache', ...SECURITY_HEADERS }).end(body)
  }

  private async events (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', ...SECURITY_HEADERS })
    res.write('retry: 2000\n\n')
    this.clients.add(res)
    req.on('close', () => {
      this.clients.delete(res)
      if (this.clients.size === 0) this.quiet()
    })
    if (this.clients.size === 1) {
      this.node.migrations.addEventListener('change', this.onChange)
      this.idleTimer = setInterval(() => { this.schedule() }, this.init.idlePushInterval ?? DEFAULT_IDLE_PUSH_INTERVAL)
      this.idleTimer.unref()
    }
    await this.send([res])
  }

  private quiet (): void {
    this.node.migrations.removeEventListener('change', this.onChange)
    clearInterval(this.idleTimer)
    clearTimeout(this.pushTimer)
    this.idleTimer = undefined
    this.pushTimer = undefined
  }

  private schedule (): void {
    if (this.pushTimer != null || this.clients.size === 0) return
    const wait = Math.max(0, this.lastPush + (this.init.pushInterval ?? DEFAULT_PUSH_INTERVAL) - Date.now())
    this.pushTimer = setTimeout(() => {
      this.pushTimer = undefined
      this.send([...this.clients]).catch(err => { log.error('push failed - %e', err) })
    }, wait)
  }

  private async send (to: http.ServerResponse[]): Promise<void> {
    this.lastPush = Date.now()
    const data = `event: status\ndata: ${JSON.stringify(await this.snapshot())}\n\n`
    for (const res of to) {
      if (!res.writableEnded && !res.destroyed) res.write(data)
    }
  }
}
