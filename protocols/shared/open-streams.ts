/**
 * The streams a service has open, so `stop()` can abort them, and its inbound streams counted
 * per remote peer: libp2p's stream limit is per connection, so a peer with many connections
 * is held here.
 */
import type { Logger, Stream } from '@libp2p/interface'
import { TooManyStreamsError } from '../pages/errors.ts'

export interface OpenStreamsInit {
  /** Names the protocol in logs and refusals ("page", "presence"). */
  name: string
  /** Inbound streams one remote peer may have open at once. */
  maxStreamsPerPeer: number
  log: Logger
}

export class OpenStreams {
  private readonly name: string
  private readonly maxStreamsPerPeer: number
  private readonly log: Logger
  /** Every open stream, inbound and outbound. */
  private readonly streams = new Set<Stream>()
  private readonly perPeer = new Map<string, number>()

  constructor (init: OpenStreamsInit) {
    this.name = init.name
    this.maxStreamsPerPeer = init.maxStreamsPerPeer
    this.log = init.log
  }

  /** Streams open. */
  get size (): number {
    return this.streams.size
  }

  /** Remote peers with an inbound stream open. */
  get peers (): number {
    return this.perPeer.size
  }

  /** Track an outbound stream until `delete`. */
  add (stream: Stream): void {
    this.streams.add(stream)
  }

  delete (stream: Stream): void {
    this.streams.delete(stream)
  }

  /**
   * Run `serve` on an inbound stream of `peer`, counted while it runs; a failure resets the
   * stream with the error. Returns false, and resets the stream with TooManyStreamsError,
   * when the peer has `maxStreamsPerPeer` open already.
   */
  serveInbound (stream: Stream, peer: string, serve: () => Promise<void>): boolean {
    const open = this.perPeer.get(peer) ?? 0
    if (open >= this.maxStreamsPerPeer) {
      this.log('peer %s has %d %s streams open, refusing another', peer, open, this.name)
      stream.abort(new TooManyStreamsError(`peer ${peer} has ${open} ${this.name} streams open`))
      return false
    }
    this.perPeer.set(peer, open + 1)
    this.streams.add(stream)
    serve()
      .catch(err => {
        this.log.error('serving %s failed - %e', peer, err)
        stream.abort(err)
      })
      .finally(() => {
        this.streams.delete(stream)
        const n = (this.perPeer.get(peer) ?? 1) - 1
        if (n <= 0) {
          this.perPeer.delete(peer)
        } else {
          this.perPeer.set(peer, n)
        }
      })
    return true
  }

  /** Abort every open stream with `err` and forget them (their servers' counts drop as they end). */
  abortAll (err: Error): void {
    for (const stream of this.streams) {
      stream.abort(err)
    }
    this.streams.clear()
  }

  /** Forget the per-peer counts at once. */
  clearPeers (): void {
    this.perPeer.clear()
  }
}
