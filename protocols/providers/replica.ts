/**
 * The replica side of `/memfabric/providers`: serves the pipelined ADD and GET frames of one
 * inbound stream from the record store. The provider of an ADD is always the authenticated
 * remote peer.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { lpStream } from '@libp2p/utils'
import { decodeRequest, encodeMessage, indexProviders, unpackKeys } from './codec.ts'
import type { AddRequest, AddResponse, GetRequest, ProvidersResponse, Request, Response } from './codec.ts'
import { MAX_MESSAGE_SIZE, MAX_RECORD_TTL } from './constants.ts'
import type { RecordStore } from './record-store.ts'
import { withTimeout } from './utils.ts'
import type { ProviderStats } from './index.ts'

const log = logger('memfabric:providers')

export interface ReplicaInit {
  store: RecordStore
  /** Frames of a stream worked on at once. */
  window: number
  /** Idle time allowed per frame. */
  messageTimeout: number
  /** Lifetime granted when an ADD asks for none. */
  recordTtl: number
  counters: ProviderStats
  now: () => number
}

export class ReplicaServer {
  private readonly init: ReplicaInit

  constructor (init: ReplicaInit) {
    this.init = init
  }

  /** Serve pipelined ADD / GET frames on one inbound stream until the remote closes it. */
  async handle (stream: Stream, connection: Connection, signal: AbortSignal): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_SIZE })
    const provider = connection.remotePeer.toMultihash().bytes
    // up to `window` frames are worked on at once (the store's threads overlap); answers
    // still leave in request order through one write chain
    let writes: Promise<void> = Promise.resolve()
    let inflight = 0
    let slot: PromiseWithResolvers<void> | undefined
    let failed = false
    const fail = (err: Error, what: string): void => {
      if (failed) return
      failed = true
      log('%s from %p, resetting - %e', what, connection.remotePeer, err)
      stream.abort(err)
    }
    while (!failed) {
      let request: Request
      try {
        // re-armed per frame: an idle or stalled client is cut off
        const frame = await lp.read({ signal: withTimeout(this.init.messageTimeout, signal) })
        request = decodeRequest(frame)
      } catch (err: any) {
        if (err.name === 'UnexpectedEOFError' && stream.readBufferLength === 0) {
          // the client closed its side between frames: a clean end once answers are out
          await writes
          if (failed) return
          try { await stream.close({ signal: withTimeout(this.init.messageTimeout, signal) }) } catch (e: any) { stream.abort(e) }
          return
        }
        fail(err, 'bad or late frame')
        return
      }
      inflight++
      const answer = this.answer(provider, request, signal)
      answer.catch(() => {})
      writes = writes.then(async () => {
        if (failed) return
        try {
          const response = await answer
          await lp.write(encodeMessage(response), { signal: withTimeout(this.init.messageTimeout, signal) })
        } catch (err: any) {
          fail(err, `failed to answer ${request.type}`)
        } finally {
          inflight--
          slot?.resolve()
        }
      })
      while (inflight >= this.init.window && !failed) {
        slot = Promise.withResolvers()
        await slot.promise
      }
    }
  }

  private async answer (provider: Uint8Array, request: Request, signal: AbortSignal): Promise<Response> {
    return request.type === 'add' ? this.add(provider, request, signal) : this.get(request, signal)
  }

  /** ADD: `provider` provides every key. */
  private async add (provider: Uint8Array, request: AddRequest, signal: AbortSignal): Promise<AddResponse> {
    const ttl = Math.min(request.ttl ?? this.init.recordTtl, MAX_RECORD_TTL)
    const count = await this.init.store.add(provider, unpackKeys(request.keys), this.init.now() + ttl, request.addrs, { signal })
    this.init.counters.stored += count
    return { type: 'added', count }
  }

  /** GET: the providers of each key, with their remembered addresses. */
  private async get (request: GetRequest, signal: AbortSignal): Promise<ProvidersResponse> {
    const keys = unpackKeys(request.keys)
    const { peers, providers } = indexProviders(await this.init.store.get(keys, { signal }))
    const addrs = await this.init.store.getAddrs(peers, { signal })
    this.init.counters.served += keys.length
    return { type: 'providers', peers, addrs, providers }
  }
}
