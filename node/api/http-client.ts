import { InternalError } from '../../common/errors.ts'
import { ApiRequestError, ApiTruncatedError, DaemonUnreachableError, RemoteError } from './errors.ts'
import { API_METHODS, API_PREFIX, CALLBACK_PATH } from './rpc.ts'
import type { CallbackAnswer, RpcLine } from './rpc.ts'
import type { MemfabricApi } from './index.ts'

export { DaemonUnreachableError, RemoteError }

type Callback = () => Promise<void> | void

interface CallOptions {
  signal?: AbortSignal
  onProgress?(progress: any): void
  [key: string]: unknown
}

/** MemfabricApi over the daemon's HTTP control API. */
export class HttpApiClient {
  readonly online = true
  readonly url: string
  private readonly token?: string

  constructor (url: string, options: { token?: string } = {}) {
    this.url = url.replace(/\/$/, '')
    this.token = options.token
    for (const [method, spec] of Object.entries(API_METHODS)) {
      (this as any)[method] = async (...args: unknown[]) => this.call(method, args, spec.optionsArg)
    }
  }

  /** Connect and check that the daemon answers and takes the token. */
  static async connect (url: string, options: { token?: string, timeout?: number } = {}): Promise<MemfabricApi & HttpApiClient> {
    const client = new HttpApiClient(url, options)
    await client.call('id', [], 0, AbortSignal.timeout(options.timeout ?? 3000))
    return client as MemfabricApi & HttpApiClient
  }

  async close (): Promise<void> {}

  async call (method: string, args: unknown[], optionsArg: number, signal?: AbortSignal): Promise<unknown> {
    const options: CallOptions = (args[optionsArg] ?? {}) as CallOptions
    const { signal: callSignal, onProgress, ...rest } = options
    // functions stay here: the wire says only that the caller has one
    const callbacks = new Map<string, Callback>()
    for (const name of API_METHODS[method]?.callbacks ?? []) {
      if (typeof rest[name] === 'function') {
        callbacks.set(name, rest[name] as Callback)
        rest[name] = true
      }
    }
    const wireArgs = [...args]
    wireArgs[optionsArg] = rest
    const response = await this.post(`${API_PREFIX}${method}`, wireArgs, signal ?? callSignal)
    if (!response.ok || response.body == null) {
      throw new ApiRequestError(`daemon refused ${method}: HTTP ${response.status} ${await response.text()}`.trim())
    }
    const decoder = new TextDecoder()
    let buffered = ''
    for await (const chunk of response.body) {
      buffered += decoder.decode(chunk, { stream: true })
      let newline: number
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = JSON.parse(buffered.slice(0, newline)) as RpcLine
        buffered = buffered.slice(newline + 1)
        if ('progress' in line) {
          onProgress?.(line.progress)
        } else if ('callback' in line) {
          // not awaited: the stream keeps being read while the callback runs
          void this.runCallback(callbacks.get(line.callback.name), line.callback, signal ?? callSignal)
        } else if ('result' in line) {
          return line.result ?? undefined
        } else if ('error' in line) {
          throw new RemoteError(line.error.message, line.error.code)
        }
      }
    }
    throw new ApiTruncatedError(`daemon closed the ${method} call without an answer`)
  }

  /** Run the caller's callback and post its outcome; a failure to post ends the call from the daemon's side. */
  private async runCallback (fn: Callback | undefined, callback: { id: string, name: string }, signal?: AbortSignal): Promise<void> {
    let answer: CallbackAnswer = { id: callback.id }
    try {
      if (fn == null) throw new InternalError(`the daemon called back '${callback.name}', which this call did not give`)
      await fn()
    } catch (err: any) {
      answer = { id: callback.id, error: { code: err.code ?? InternalError.code, message: err.message ?? String(err) } }
    }
    await this.post(CALLBACK_PATH, answer, signal).then(async r => { await r.body?.cancel() }, () => {})
  }

  private async post (path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
    let response: Response
    try {
      response = await fetch(`${this.url}${path}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(this.token != null ? { authorization: `Bearer ${this.token}` } : {})
        },
        body: JSON.stringify(body),
        signal
      })
    } catch (err: any) {
      if (err.name === 'AbortError' || err.name === 'TimeoutError') throw err
      throw new DaemonUnreachableError(this.url, { cause: err })
    }
    if (response.status === 401) {
      await response.body?.cancel()
      throw new ApiRequestError(`the daemon at ${this.url} refused this caller: it needs the token in <repo>/api.token (readable only by the daemon's user) or --api-token`)
    }
    return response
  }
}
