/**
 * A QMP client: QEMU's JSON machine protocol over a unix socket. After the greeting the client
 * negotiates capabilities (`qmp_capabilities`), then sends commands one JSON object per line
 * and matches answers by `id`; asynchronous events (`STOP`, `RESUME`, `MIGRATION`...) are kept
 * for `waitEvent`.
 *
 * Every read is bounded: a line may be at most {@link DEFAULT_QMP_MAX_LINE} bytes and every
 * command and the greeting have a timeout.
 *
 * @example
 * ```ts
 * const qmp = await QmpClient.connect('/run/vm1.qmp')
 * await qmp.execute('stop')
 * const status = await qmp.execute<{ status: string }>('query-status')
 * qmp.close()
 * ```
 */
import { createConnection } from 'node:net'
import type { Socket } from 'node:net'
import { logger } from '@libp2p/logger'
import type { AbortOptions } from '@libp2p/interface'
import { DEFAULT_QMP_COMMAND_TIMEOUT, DEFAULT_QMP_CONNECT_TIMEOUT, DEFAULT_QMP_MAX_LINE } from './constants.ts'
import { QmpClosedError, QmpCommandError, QmpConnectError, QmpProtocolError, QmpTimeoutError } from './errors.ts'

const log = logger('memfabric:qemu:qmp')

export interface QmpEvent {
  event: string
  data?: any
  timestamp?: { seconds: number, microseconds: number }
}

export interface QmpConnectOptions extends AbortOptions {
  /** Greeting and negotiation deadline (ms). Default {@link DEFAULT_QMP_CONNECT_TIMEOUT}. */
  timeout?: number
  /** Default deadline of each command (ms). Default {@link DEFAULT_QMP_COMMAND_TIMEOUT}. */
  commandTimeout?: number
  /** Longest line accepted from QEMU (bytes). Default {@link DEFAULT_QMP_MAX_LINE}. */
  maxLine?: number
}

export interface QmpExecuteOptions extends AbortOptions {
  /** Deadline of this command (ms). Default: the client's command timeout. */
  timeout?: number
}

interface Pending {
  command: string
  resolve(value: any): void
  reject(err: Error): void
}

type Waiter = (message: any) => void

export class QmpClient {
  readonly path: string
  /** The greeting's QEMU version, e.g. `7.2.0`. */
  version?: string
  private readonly socket: Socket
  private readonly commandTimeout: number
  private readonly maxLine: number
  private readonly pending = new Map<string, Pending>()
  private readonly events: QmpEvent[] = []
  private readonly eventWaiters = new Set<(e: QmpEvent) => void>()
  private greetingWaiter?: Waiter
  private buffered = ''
  private nextId = 1
  private closedError?: Error

  private constructor (path: string, socket: Socket, options: QmpConnectOptions) {
    this.path = path
    this.socket = socket
    this.commandTimeout = options.commandTimeout ?? DEFAULT_QMP_COMMAND_TIMEOUT
    this.maxLine = options.maxLine ?? DEFAULT_QMP_MAX_LINE
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => { this.onData(chunk) })
    socket.on('error', (err) => { this.fail(new QmpClosedError(`QMP socket ${path}: ${err.message}`, { cause: err })) })
    socket.on('close', () => { this.fail(new QmpClosedError(`QMP socket ${path} closed`)) })
  }

  /** Connect, read the greeting and leave capabilities negotiation mode. */
  static async connect (path: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const signal = AbortSignal.any([AbortSignal.timeout(options.timeout ?? DEFAULT_QMP_CONNECT_TIMEOUT), ...(options.signal != null ? [options.signal] : [])])
    const socket = createConnection({ path })
    const client = new QmpClient(path, socket, options)
    try {
      const greeting = await new Promise<any>((resolve, reject) => {
        const onAbort = (): void => { reject(new QmpTimeoutError(`no QMP greeting from ${path} in time`)) }
        if (signal.aborted) { onAbort(); return }
        signal.addEventListener('abort', onAbort, { once: true })
        socket.once('error', (err: any) => { reject(new QmpConnectError(`cannot connect to QMP socket ${path}: ${err.code ?? err.message}`, { cause: err })) })
        socket.once('close', () => { reject(new QmpConnectError(`QMP socket ${path} closed before its greeting (is another client connected?)`)) })
        client.greetingWaiter = (message) => {
          signal.removeEventListener('abort', onAbort)
          resolve(message)
        }
      })
      if (greeting?.QMP == null) throw new QmpProtocolError(`${path} did not greet with QMP: ${JSON.stringify(greeting).slice(0, 200)}`)
      const v = greeting.QMP.version?.qemu
      if (v != null) client.version = `${v.major}.${v.minor}.${v.micro}`
      await client.execute('qmp_capabilities', undefined, { signal })
      log('connected to %s (QEMU %s)', path, client.version)
      return client
    } catch (err) {
      client.close()
      throw err
    }
  }

  /** Run a command; resolves to its `return` value, rejects with QmpCommandError on `error`. */
  async execute<T = any> (command: string, args?: Record<string, unknown>, options: QmpExecuteOptions = {}): Promise<T> {
    if (this.closedError != null) throw this.closedError
    const id = `mf-${this.nextId++}`
    const timeout = options.timeout ?? this.commandTimeout
    const signal = AbortSignal.any([AbortSignal.timeout(timeout), ...(options.signal != null ? [options.signal] : [])])
    return await new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        this.pending.delete(id)
        reject(options.signal?.aborted === true ? options.signal.reason : new QmpTimeoutError(`QMP ${command} on ${this.path} did not answer within ${timeout} ms`))
      }
      if (signal.aborted) { onAbort(); return }
      signal.addEventListener('abort', onAbort, { once: true })
      this.pending.set(id, {
        command,
        resolve: (v) => { signal.removeEventListener('abort', onAbort); resolve(v) },
        reject: (e) => { signal.removeEventListener('abort', onAbort); reject(e) }
      })
      log.trace('-> %s %o', command, args)
      this.socket.write(JSON.stringify({ execute: command, ...(args != null ? { arguments: args } : {}), id }) + '\n')
    })
  }

  /** Events received so far (oldest first). */
  received (): readonly QmpEvent[] {
    return this.events
  }

  /** The first event (already received or to come) for which `match` is true. */
  async waitEvent (match: (e: QmpEvent) => boolean, options: QmpExecuteOptions = {}): Promise<QmpEvent> {
    const seen = this.events.find(match)
    if (seen != null) return seen
    if (this.closedError != null) throw this.closedError
    const timeout = options.timeout ?? this.commandTimeout
    const signal = AbortSignal.any([AbortSignal.timeout(timeout), ...(options.signal != null ? [options.signal] : [])])
    return await new Promise<QmpEvent>((resolve, reject) => {
      const waiter = (e: QmpEvent): void => {
        if (!match(e)) return
        cleanup()
        resolve(e)
      }
      const onAbort = (): void => {
        cleanup()
        reject(options.signal?.aborted === true ? options.signal.reason : new QmpTimeoutError(`no matching QMP event from ${this.path} within ${timeout} ms`))
      }
      const cleanup = (): void => {
        this.eventWaiters.delete(waiter)
        signal.removeEventListener('abort', onAbort)
      }
      if (signal.aborted) { onAbort(); return }
      signal.addEventListener('abort', onAbort, { once: true })
      this.eventWaiters.add(waiter)
    })
  }

  /** Close the connection (idempotent); pending commands fail. */
  close (): void {
    this.fail(new QmpClosedError(`QMP connection to ${this.path} closed`))
    this.socket.destroy()
  }

  private onData (chunk: string): void {
    this.buffered += chunk
    let newline: number
    while ((newline = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, newline).trim()
      this.buffered = this.buffered.slice(newline + 1)
      if (line !== '') this.onLine(line)
    }
    if (this.buffered.length > this.maxLine) {
      this.fail(new QmpProtocolError(`QMP line from ${this.path} longer than ${this.maxLine} bytes`))
      this.socket.destroy()
    }
  }

  private onLine (line: string): void {
    let message: any
    try {
      message = JSON.parse(line)
    } catch {
      this.fail(new QmpProtocolError(`QMP sent something that is not JSON: ${line.slice(0, 200)}`))
      this.socket.destroy()
      return
    }
    log.trace('<- %s', line.slice(0, 500))
    if (this.greetingWaiter != null) {
      // the first line must be the greeting; connect() checks it
      const waiter = this.greetingWaiter
      this.greetingWaiter = undefined
      waiter(message)
      return
    }
    if (message.event != null) {
      const event = message as QmpEvent
      this.events.push(event)
      for (const w of [...this.eventWaiters]) w(event)
      return
    }
    const id = message.id as string | undefined
    const pending = id != null ? this.pending.get(id) : undefined
    if (pending == null) {
      log('unmatched QMP answer %s', line.slice(0, 200))
      return
    }
    this.pending.delete(id as string)
    if (message.error != null) {
      pending.reject(new QmpCommandError(`QMP ${pending.command} failed: ${message.error.class}: ${message.error.desc}`, message.error.class))
    } else {
      pending.resolve(message.return)
    }
  }

  private fail (err: Error): void {
    if (this.closedError != null) return
    this.closedError = err
    for (const p of this.pending.values()) p.reject(err)
    this.pending.clear()
  }
}
