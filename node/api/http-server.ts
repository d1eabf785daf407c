import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { isAbsolute } from 'node:path'
import { logger } from '@libp2p/logger'
import { InternalError } from '../../common/errors.ts'
import { ApiBindError } from './errors.ts'
import { API_METHODS, API_PREFIX, CALLBACK_PATH, MAX_REQUEST_BODY } from './rpc.ts'
import type { CallbackAnswer, MethodSpec, RpcLine } from './rpc.ts'
import { bearerMatches } from './token.ts'
import { hostCheck, originMatches, urlHost } from './host-check.ts'
import type { HostCheck } from './host-check.ts'
import { PendingCallbacks } from './callbacks.ts'

const log = logger('memfabric:api')

export interface ApiServerInit {
  /** Bind address; localhost unless the operator says otherwise (default '127.0.0.1'). */
  host?: string
  /** Port; 0 picks a free one (default DEFAULT_API_PORT from node/constants). */
  port: number
  /** Bearer token every request but the public routes must carry (required, non-empty). */
  token: string
}

export { ApiBindError }

type Handler = (...args: any[]) => Promise<unknown>

/** Extra routes (status page, metrics) mounted beside the RPC methods. */
export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> | void

export interface RouteOptions {
  /** Served without the token: only for constant files that reveal nothing (default false). */
  public?: boolean
}

/**
 * The daemon's control API: MemfabricApi over HTTP on localhost. Every request must name the
 * API's own address as `Host` (DNS rebinding), carry no foreign `Origin` (CSRF), and, except
 * the public routes, the bearer token (any local process).
 */
export class ApiServer {
  private readonly server: http.Server
  private readonly api: Record<string, Handler>
  private readonly init: ApiServerInit
  private readonly routes = new Map<string, { handler: RouteHandler, public: boolean }>()
  private readonly callbacks = new PendingCallbacks()
  private origin = ''
  private hostAllowed: HostCheck = () => false

  constructor (api: object, init: ApiServerInit) {
    this.api = api as Record<string, Handler>
    this.init = init
    if (typeof init.token !== 'string' || init.token === '') {
      throw new ApiBindError('refusing to start the control API without a token')
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
  route (path: string, handler: RouteHandler, options: RouteOptions = {}): void {
    this.routes.set(path, { handler, public: options.public === true })
  }

  async listen (): Promise<string> {
    const host = this.init.host ?? '127.0.0.1'
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(this.init.port, host, () => { this.server.off('error', reject); resolve() })
    })
    const address = this.server.address() as AddressInfo
    this.origin = `http://${urlHost(host)}:${address.port}`
    this.hostAllowed = hostCheck(host, address.port)
    return this.origin
  }

  get url (): string {
    return this.origin
  }

  async close (): Promise<void> {
    this.callbacks.rejectAll(new Error('control API closed'))
    if (!this.server.listening) return
    this.server.closeAllConnections()
    await new Promise(resolve => this.server.close(resolve))
  }

  private async handle (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (!this.hostAllowed(req.headers.host) || !originMatches(req.headers.origin, req.headers.host)) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('forbidden\n')
      return
    }
    const route = this.routes.get(url.pathname)
    if (req.method === 'GET' && route != null) {
      if (route.public || this.authorized(req, res)) await route.handler(req, res)
      return
    }
    if (req.method === 'POST' && url.pathname === CALLBACK_PATH) {
      if (this.authorized(req, res)) await this.answer(req, res)
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
    if (!this.authorized(req, res)) return
    const args = await this.readArgs(req, res, method, spec)
    if (args == null) return

    const controller = new AbortController()
    res.on('close', () => { if (!res.writableFinished) controller.abort() })
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' })
    // send the headers now: a long call without progress lines must not hit the client's header timeout (undici: 300 s)
    res.flushHeaders()
    const write = (line: RpcLine): void => { res.write(JSON.stringify(line) + '\n') }
    const options = args[spec.optionsArg] as Record<string, unknown>
    for (const name of spec.callbacks ?? []) {
      if (options[name] === true) options[name] = this.callbacks.create(name, write, controller.signal)
      else delete options[name]
    }
    options.signal = controller.signal
    options.onProgress = (progress: unknown) => { write({ progress }) }
    try {
      const result = await this.api[method](...args)
      write({ result: result ?? null })
    } catch (err: any) {
      write({ error: { code: err.code ?? InternalError.code, message: err.message ?? String(err) } })
    }
    res.end()
  }

  /** True when the request carries the token; otherwise answers 401. */
  private authorized (req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if (bearerMatches(req.headers.authorization, this.init.token)) return true
    res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="memfabric"' })
      .end('unauthorized: send the token of <repo>/api.token as a bearer token\n')
    return false
  }

  /** The call's arguments, checked against its spec; answers 400 and returns undefined when they are not acceptable. */
  private async readArgs (req: http.IncomingMessage, res: http.ServerResponse, method: string, spec: MethodSpec): Promise<unknown[] | undefined> {
    // a JSON content type makes browsers preflight, which this server never approves
    if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
      res.writeHead(415, { 'content-type': 'text/plain' }).end('content-type must be application/json\n')
      return undefined
    }
    let args: unknown[]
    try {
      const parsed = JSON.parse(await readBody(req))
      if (!Array.isArray(parsed)) throw new Error('arguments must be a JSON array')
      args = parsed
    } catch (err: any) {
      // the rest of an oversize body is never read: the connection cannot be reused
      res.writeHead(400, { 'content-type': 'text/plain', connection: 'close' }).end(`bad request: ${err.message}\n`)
      return undefined
    }
    const refuse = (why: string): undefined => {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`bad request: ${why}\n`)
      return undefined
    }
    const options = { ...(isObject(args[spec.optionsArg]) ? args[spec.optionsArg] as object : {}) } as Record<string, unknown>
    // a known shape only: e.g. a `pauseCommand` (a shell command for the daemon) is refused, not ignored
    const unknown = Object.keys(options).find(key => !spec.options.includes(key))
    if (unknown !== undefined) return refuse(`${method} takes no option '${unknown}'`)
    for (const i of spec.paths ?? []) {
      // the daemon's working directory means nothing to the caller: it resolves its paths itself
      if (typeof args[i] === 'string' && !isAbsolute(args[i])) return refuse(`${method} needs an absolute path, got '${args[i]}'`)
    }
    args[spec.optionsArg] = options
    return args
  }

  private async answer (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let answer: CallbackAnswer
    try {
      answer = JSON.parse(await readBody(req))
      if (!isObject(answer)) throw new Error('expected {"id"}')
    } catch (err: any) {
      res.writeHead(400, { 'content-type': 'text/plain', connection: 'close' }).end(`bad request: ${err.message}\n`)
      return
    }
    if (this.callbacks.answer(answer)) res.writeHead(204).end()
    else res.writeHead(404, { 'content-type': 'text/plain' }).end('no such callback\n')
  }
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
