/**
 * The presence service: answers "which of these CIDs do you hold?" from a PageStore with a
 * bitmap, and asks peers the same (wire format in codec.ts).
 */
import { logger } from '@libp2p/logger'
import { lpStream } from '@libp2p/utils'
import type { Connection, PeerId, Startable, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'
import { isPageCid } from '../../store/page.ts'
import type { PageStore } from '../../store/index.ts'
import { readAnswer, readFrame } from '../shared/frame-timeout.ts'
import { misbehavedFor } from '../shared/misbehaved.ts'
import { OpenStreams } from '../shared/open-streams.ts'
import { peerKey } from '../shared/peer-key.ts'
import { RequestIds } from '../shared/request-ids.ts'
import { ServiceLifecycle } from '../shared/service-lifecycle.ts'
import {
  DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CIDS_PER_QUERY, DEFAULT_MAX_INBOUND_STREAMS, DEFAULT_MAX_OUTBOUND_STREAMS,
  DEFAULT_MAX_REQUEST_FRAME_LENGTH, DEFAULT_MAX_STREAMS_PER_PEER, DEFAULT_MAX_RESPONSE_FRAME_LENGTH, DEFAULT_WINDOW, PRESENCE_PROTOCOL
} from './constants.ts'
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse, fromBitmap } from './codec.ts'
import { InvalidPageCidError, NotStartedError, TransferTimeoutError } from './errors.ts'
import type { PresenceComponents, PresenceCounters, PresenceInit, QueryOptions } from './index.ts'

const log = logger('memfabric:presence')

export class Presence implements Startable {
  readonly protocol = PRESENCE_PROTOCOL
  readonly counters: PresenceCounters = { queriesServed: 0, cidsServed: 0, queriesSent: 0, cidsQueried: 0, misbehaved: 0, timeouts: 0, refused: 0 }

  private readonly components: PresenceComponents
  private readonly store: PageStore
  private readonly maxCids: number
  private readonly maxRequestFrameLength: number
  private readonly maxResponseFrameLength: number
  private readonly idleTimeout: number
  private readonly window: number
  private readonly streams: OpenStreams
  private readonly ids = new RequestIds()
  /** Its signal, aborted by stop(), ends every pending read and store call of this service. */
  private readonly lifecycle: ServiceLifecycle

  constructor (components: PresenceComponents, init: PresenceInit) {
    this.components = components
    this.store = init.store
    this.maxCids = init.maxCidsPerQuery ?? DEFAULT_MAX_CIDS_PER_QUERY
    this.maxRequestFrameLength = init.maxRequestFrameLength ?? DEFAULT_MAX_REQUEST_FRAME_LENGTH
    this.maxResponseFrameLength = init.maxResponseFrameLength ?? DEFAULT_MAX_RESPONSE_FRAME_LENGTH
    this.streams = new OpenStreams({ name: 'presence', maxStreamsPerPeer: init.maxStreamsPerPeer ?? DEFAULT_MAX_STREAMS_PER_PEER, log })
    this.idleTimeout = init.idleTimeout ?? DEFAULT_IDLE_TIMEOUT
    this.window = init.window ?? DEFAULT_WINDOW
    this.lifecycle = new ServiceLifecycle({
      registrar: components.registrar,
      protocol: this.protocol,
      handler: (stream, connection) => { this.onStream(stream, connection) },
      maxInboundStreams: init.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS,
      maxOutboundStreams: init.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS,
      streams: this.streams,
      stopped: () => new NotStartedError('presence stopped')
    })
  }

  readonly [Symbol.toStringTag] = '@memfabric/presence'

  isStarted (): boolean {
    return this.lifecycle.isStarted()
  }

  async start (): Promise<void> {
    await this.lifecycle.start()
  }

  async stop (): Promise<void> {
    if (!this.lifecycle.isStarted()) {
      return
    }
    await this.lifecycle.stop()
    this.streams.clearPeers()
  }

  private onStream (stream: Stream, connection: Connection): void {
    const peer = connection.remotePeer.toString()
    if (!this.streams.serveInbound(stream, peer, async () => this.serve(stream, peer))) {
      this.counters.refused++
    }
  }

  /** Answer queries in order until the client closes its end; one at a time is back-pressure. */
  private async serve (stream: Stream, peer: string): Promise<void> {
    const lp = lpStream(stream, {
      maxDataLength: this.maxRequestFrameLength,
      maxBufferSize: (this.window + 1) * this.maxRequestFrameLength
    })
    while (true) {
      let frame
      try {
        frame = await readFrame(lp, peer, this.idleTimeout, this.lifecycle.signal)
      } catch (err: any) {
        if (err?.name === 'UnexpectedEOFError') {
          break
        }
        if (err instanceof TransferTimeoutError) {
          this.counters.timeouts++
        }
        throw err
      }
      const req = decodeRequest(frame, this.maxCids)
      const signal = AbortSignal.timeout(this.idleTimeout)
      const held = await this.store.has(req.cids, { signal })
      if (held.length !== req.cids.length) {
        throw new Error(`store answered ${held.length} of ${req.cids.length} CIDs`)
      }
      await lp.write(encodeResponse(req.id, held), { signal })
      this.counters.queriesServed++
      this.counters.cidsServed += req.cids.length
    }
    await stream.close({ signal: AbortSignal.timeout(this.idleTimeout) })
  }

  /** For each CID, whether `peer` holds its page (in order). */
  async query (peer: PeerId | Multiaddr, cids: CID[], options: QueryOptions = {}): Promise<boolean[]> {
    if (!this.lifecycle.isStarted()) {
      throw new NotStartedError()
    }
    for (const cid of cids) {
      if (!isPageCid(cid)) {
        throw new InvalidPageCidError(`${cid} cannot name a page`)
      }
    }
    if (cids.length === 0) {
      return []
    }
    const remote = peerKey(peer)
    const signal = AbortSignal.any(options.signal == null ? [this.lifecycle.signal] : [options.signal, this.lifecycle.signal])
    const idleTimeout = options.idleTimeout ?? this.idleTimeout
    const window = options.window ?? this.window
    const out: boolean[] = new Array(cids.length)
    const batches: Array<{ start: number, cids: CID[] }> = []
    for (let i = 0; i < cids.length; i += this.maxCids) {
      batches.push({ start: i, cids: cids.slice(i, i + this.maxCids) })
    }
    const misbehaved = misbehavedFor(remote, () => { this.counters.misbehaved++ })

    const stream = await this.components.connectionManager.openStream(peer, this.protocol, { signal })
    this.streams.add(stream)
    const lp = lpStream(stream, {
      maxDataLength: this.maxResponseFrameLength,
      maxBufferSize: (window + 1) * this.maxResponseFrameLength
    })
    // the server answers in order: a FIFO of what we asked
    const inflight: Array<{ id: number, start: number, cids: CID[] }> = []
    let next = 0
    const sendMore = async (): Promise<void> => {
      const frames: Uint8Array[] = []
      while (inflight.length < window && next < batches.length) {
        const batch = batches[next++]
        const id = this.ids.take()
        inflight.push({ id, ...batch })
        frames.push(encodeRequest({ id, cids: batch.cids }))
        this.counters.queriesSent++
        this.counters.cidsQueried += batch.cids.length
      }
      if (frames.length > 0) {
        await lp.writeV(frames, { signal })
      }
    }
    try {
      await sendMore()
      while (inflight.length > 0) {
        const frame = await readAnswer(lp, {
          peer: remote,
          timeout: idleTimeout,
          signal,
          misbehaved,
          onTimeout: () => { this.counters.timeouts++ },
          failure: err => `presence stream failed with ${inflight.length} queries unanswered: ${err?.message}`
        })
        let res
        try {
          res = decodeResponse(frame, this.maxCids)
        } catch (err: any) {
          throw misbehaved(`undecodable presence frame: ${err.message}`, err)
        }
        const req = inflight.shift()
        if (req == null || res.id !== req.id || res.count !== req.cids.length) {
          throw misbehaved(`presence response ${res.id} (${res.count} CIDs) does not answer query ${req?.id}`)
        }
        const held = fromBitmap(res.bitmap, res.count)
        for (let i = 0; i < held.length; i++) {
          out[req.start + i] = held[i]
        }
        await sendMore()
      }
      await stream.close({ signal: AbortSignal.timeout(idleTimeout) })
    } catch (err: any) {
      stream.abort(err)
      throw err
    } finally {
      this.streams.delete(stream)
    }
    return out
  }
}
