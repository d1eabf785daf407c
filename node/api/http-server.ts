import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { logger } from '@libp2p/logger'
import { ApiBindError } from './errors.ts'
import { API_METHODS, API_PREFIX, MAX_REQUEST_BODY } from './rpc.ts'
import type { RpcLine } from './rpc.ts'

const log = logger('memfabric:api')

export interface ApiServerInit {
  /** Bind address; localhost unless the operator says otherwise (default '127.0.0.1'). */
  host?: string
  /** Port; 0 picks a free one (default DEFAULT_API_PORT from node/constants). */
  port: number
  /** Required bearer token when set (must be set to bind a non-loopback address). */
  token?: string
}

export { ApiBindError }

type Handler = (...args: any[]) => Promise<unknown>

/** Extra routes (status page, metrics) mounted beside the RPC methods. */
export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> | void

/**
 * The daemon's control API: MemfabricApi over HTTP on localhost. Refuses cross-origin browser
 * requests and foreign Host headers (DNS rebinding); binding elsewhere needs a token.
 */
export class ApiServer {
  private readonly server: http.Server
  private readonly api: Record<string, Handler>
  private readonly init: ApiServerInit
  private readonly routes = new Map<string, RouteHandler>()
  private origin = ''

  constructor (api: object, init: ApiServerInit) {
    this.api = api as Record<string, Handler>
    this.init = init
    const host = init.host ?? '127.0.0.1'
    if (!isLoopback(host) && (init.token == null || init.token === '')) {
      throw new ApiBindError(`refusing to bind the control API to ${host} without a token (--api-token)`)
    }
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch(err => {
        log.error('request failed - %e', err)
        if (!res.headersSent) res.writeHead(500)
        res.end()
      })
    })
  }

  /** Mount a GET route such as `/` or `/metrics`. */
  route (path: string, handler: RouteHandler): void {
    this.routes.set(path, handler)
  }

  async listen (): Promise<string> {
    const host = this.init.host ?? '127.0.0.1'
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(this.init.port, host, () => { this.server.off('error', reject); resolve() })
    })
    const address = this.server.address() as AddressInfo
    this.origin = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`
    return this.origin
  }

  get url (): string {
    return this.origin
  }

  async close (): Promise<void> {
    if (!this.server.listening) return
    this.server.closeAllConnections()
    await new Promise(resolve => this.server.close(resolve))
  }

  private async handle (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (!this.allowed(req)) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('forbidden\n')
      return
    }
    const route = this.routes.get(url.pathname)
    if (req.method === 'GET' && route != null) {
      await route(req, res)
      return
    }
    if (!url.pathname.startsWith(API_PREFIX)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
      return
    }
    const method = url.pathname.slice(API_PREFIX.length)
    // own keys only: `toString`, `constructor`... are not API methods
    const spec = Object.hasOwn(API_METHODS, method) ? API_METHODS[method] : undefined
    if (req.method !== 'POST' || spec == null || typeof this.api[method] !== 'function') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`unknown API method ${method}\n`)
      return
    }
    // a JSON content type makes browsers preflight, which this server never approves
    if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
      res.writeHead(415, { 'content-type': 'text/plain' }).end('content-type must be application/json\n')
      return
    }
    let args: unknown[]
    try {
      const parsed = JSON.parse(await readBody(req))
      if (!Array.isArray(parsed)) throw new Error('arguments must be a JSON array')
      args = parsed
    } catch (err: any) {
      // the rest of an oversize body is never read: the connection cannot be reused
      res.writeHead(400, { 'content-type': 'text/plain', connection: 'close' }).end(`bad request: ${err.message}\n`)
      return
    }

    const controller = new AbortController()
    res.on('close', () => { if (!res.writableFinished) controller.abort() })
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' })
    // send the headers now: a long call without progress lines must not hit the client's header timeout (undici: 300 s)
    res.flushHeaders()
    const write = (line: RpcLine): void => { res.write(JSON.stringify(line) + '\n') }
    const options = { ...(isObject(args[spec.optionsArg]) ? args[spec.optionsArg] as object : {}) }
    args[spec.optionsArg] = {
      ...options,
      signal: controller.signal,
      onProgress: (progress: unknown) => { write({ progress }) }
    }
    try {
      const result = await this.api[method](...args)
      write({ result: result ?? null })
    } catch (err: any) {
      write({ error: { code: err.code ?? 'ERR_INTERNAL', message: err.message ?? String(err) } })
    }
    res.end()
  }

  private allowed (req: http.IncomingMessage): boolean {
    if (this.init.token != null && this.init.token !== '' && req.headers.authorization !== `Bearer ${this.init.token}`) {
      return false
    }
    const origin = req.headers.origin
    if (origin != null && origin !== this.origin) {
      return false
    }
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '')
    return host === (this.init.host ?? '127.0.0.1') || isLoopback(host) || (this.init.token != null && this.init.token !== '')
  }
}

function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.')
}

function isObject (value: unknown): boolean {
  return value != null && typeof value === 'object' && !Array.isArray(value)
}

async function readBody (req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += chunk.byteLength
    if (size > MAX_REQUEST_BODY) throw new Error('request body too large')
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8') || '[]'
}
