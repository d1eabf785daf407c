import { ApiRequestError, ApiTruncatedError, DaemonUnreachableError, RemoteError } from './errors.ts'
import { API_METHODS, API_PREFIX } from './rpc.ts'
import type { RpcLine } from './rpc.ts'
import type { MemfabricApi } from './index.ts'

export { DaemonUnreachableError, RemoteError }

interface CallOptions {
  signal?: AbortSignal
  onProgress?(progress: any): void
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

  /** Connect and check that the daemon answers. */
  static async connect (url: string, options: { token?: string, timeout?: number } = {}): Promise<MemfabricApi & HttpApiClient> {
    const client = new HttpApiClient(url, options)
    await client.call('id', [], 0, AbortSignal.timeout(options.timeout ?? 3000))
    return client as MemfabricApi & HttpApiClient
  }

  async close (): Promise<void> {}

  async call (method: string, args: unknown[], optionsArg: number, signal?: AbortSignal): Promise<unknown> {
    const options: CallOptions = (args[optionsArg] ?? {}) as CallOptions
    const { signal: callSignal, onProgress, ...rest } = options
    const wireArgs = [...args]
    wireArgs[optionsArg] = rest
    let response: Response
    try {
      response = await fetch(`${this.url}${API_PREFIX}${method}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(this.token != null ? { authorization: `Bearer ${this.token}` } : {})
        },
        body: JSON.stringify(wireArgs),
        signal: signal ?? callSignal
      })
    } catch (err: any) {
      if (err.name === 'AbortError' || err.name === 'TimeoutError') throw err
      throw new DaemonUnreachableError(this.url, { cause: err })
    }
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
        } else if ('result' in line) {
          return line.result ?? undefined
        } else if ('error' in line) {
          throw new RemoteError(line.error.message, line.error.code)
        }
      }
    }
    throw new ApiTruncatedError(`daemon closed the ${method} call without an answer`)
  }
}
