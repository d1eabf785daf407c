/**
 * The client side of `/memfabric/providers`: one pipelined outbound stream per replica
 * (`PeerSession`), and the streams and failed peers of one publish or resolve run (`Run`).
 */
import type { AbortOptions, PeerId, Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import type { LengthPrefixedStream } from '@libp2p/utils'
import { decodeResponse, encodeMessage } from './codec.ts'
import type { Request, Response } from './codec.ts'
import { ProtocolError } from './errors.ts'
import { KEY_LENGTH, MAX_MESSAGE_SIZE, PROTOCOL } from './constants.ts'
import type { RecordStore } from './record-store.ts'
import type { RegionCache } from './regions.ts'
import { withTimeout } from './utils.ts'
import type { ProviderRecordsComponents, ProviderStats } from './index.ts'

/** Bytes of the unsigned-varint length prefix lpStream puts before a frame of `n` bytes. */
function prefixLength (n: number): number {
  let len = 1
  while (n >= 0x80) { n = Math.floor(n / 0x80); len++ }
  return len
}

/**
 * One outbound stream to a replica carrying pipelined requests: at most `window` frames are
 * unanswered; answers come back in order.
 */
export class PeerSession {
  private readonly stream: Stream
  private readonly lp: LengthPrefixedStream<Stream>
  private readonly window: number
  private readonly timeout: number
  private readonly counters: ProviderStats
  private inflight = 0
  private readonly waiters: Array<() => void> = []
  private readChain: Promise<unknown> = Promise.resolve()
  failure?: Error
  /** The provider's addresses go with the first ADD of a stream only. */
  addrsSent = false

  constructor (stream: Stream, window: number, timeout: number, counters: ProviderStats) {
    this.stream = stream
    this.lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_SIZE })
    this.window = window
    this.timeout = timeout
    this.counters = counters
  }

  async request (message: Request, options?: AbortOptions): Promise<Response> {
    while (this.inflight >= this.window && this.failure == null) {
      await new Promise<void>(resolve => this.waiters.push(resolve))
    }
    if (this.failure != null) throw this.failure
    this.inflight++
    try {
      const bytes = encodeMessage(message)
      // queue the read before the write: lp.write sends synchronously, so read order = send order
      const answer = this.readChain.then(async () => {
        if (this.failure != null) throw this.failure
        const frame = await this.lp.read({ signal: withTimeout(this.timeout, options?.signal) })
        return decodeResponse(frame)
      })
      this.readChain = answer.catch(() => {})
      await this.lp.write(bytes, { signal: withTimeout(this.timeout, options?.signal) })
      this.counters.sentBytes += prefixLength(bytes.byteLength) + bytes.byteLength
      this.counters.sentKeys += message.keys.byteLength / KEY_LENGTH
      const response = await answer
      if (response.type !== (message.type === 'add' ? 'added' : 'providers')) {
        throw new ProtocolError(`expected an answer to ${message.type}, got ${response.type}`)
      }
      return response
    } catch (err: any) {
      this.fail(err)
      throw err
    } finally {
      this.inflight--
      this.waiters.shift()?.()
    }
  }

  fail (err: Error): void {
    if (this.failure != null) return
    this.failure = err
    this.stream.abort(err)
    for (const wake of this.waiters.splice(0)) wake()
  }

  async close (options?: AbortOptions): Promise<void> {
    if (this.failure != null) return
    await this.readChain
    try {
      await this.stream.close({ signal: withTimeout(this.timeout, options?.signal) })
    } catch (err: any) {
      this.stream.abort(err)
    }
  }
}

/** Opens a pipelined stream to a replica. */
export type OpenSession = (peer: PeerId, options: AbortOptions) => Promise<PeerSession>

export interface SessionInit {
  components: Pick<ProviderRecordsComponents, 'connectionManager'>
  /** Time allowed to open a stream. */
  dialTimeout: number
  /** Unanswered frames per stream. */
  window: number
  /** Idle time allowed per frame. */
  messageTimeout: number
  counters: ProviderStats
}

export function sessionOpener (init: SessionInit): OpenSession {
  return async (peer, options) => {
    const stream = await init.components.connectionManager.openStream(peer, PROTOCOL, {
      signal: withTimeout(init.dialTimeout, options.signal)
    })
    return new PeerSession(stream, init.window, init.messageTimeout, init.counters)
  }
}

/** What a publish or a resolve works with. */
export interface RunInit {
  /** This peer's own records: it is a replica of the keys it ranks among the closest of. */
  store: RecordStore
  regions: RegionCache
  open: OpenSession
  /** Peers holding each record (a resolve asks them one round each). */
  replication: number
  counters: ProviderStats
}

/** The outbound streams of a running publish or resolve (one per peer) and its failed peers. */
export class Run {
  readonly sessions = new Map<string, Promise<PeerSession>>()
  readonly failed = new Set<string>()
  readonly options: AbortOptions
  private readonly open: OpenSession

  constructor (open: OpenSession, options: AbortOptions) {
    this.open = open
    this.options = options
  }

  session (peer: { id: PeerId, key: string }): Promise<PeerSession> {
    let s = this.sessions.get(peer.key)
    if (s == null) {
      s = this.open(peer.id, this.options)
      this.sessions.set(peer.key, s)
      s.catch(() => {})
    }
    return s
  }

  async close (): Promise<void> {
    await Promise.all([...this.sessions.values()].map(async s => {
      try { await (await s).close(this.options) } catch {}
    }))
  }
}
