/**
 * One direction of an emulated network link, shaped in user space (tc netem is not available).
 *
 * Every chunk read from a sender goes through one FIFO serializer shared by all connections
 * on the link (bandwidth, like a real WAN link), then waits `latencyMs` (propagation delay)
 * before it is written to the receiver. Time is virtual: each chunk gets its departure time
 * when it is queued, so the link needs one timer for deliveries and one for resuming paused
 * senders, not one timer per chunk. Memory stays bounded: a sender is paused when the link's
 * queue or its own window is full, and resumed once they drained to half.
 */
import { performance } from 'node:perf_hooks'
import {
  DEFAULT_FLOW_WINDOW_BYTES,
  DEFAULT_LINK_QUEUE_BYTES,
  DEFAULT_TIMER_SLACK_MS
} from './constants.ts'
import { InvalidWanOptionsError } from './errors.ts'
import type { Readable, Writable } from 'node:stream'

export interface LinkInit {
  /** Name used in logs and stats (default `'link'`) */
  name?: string
  /** One-way delay added to every chunk, in ms (default 0) */
  latencyMs?: number
  /** Bandwidth in bit/s shared by every connection on the link (default Infinity: unshaped) */
  bitsPerSecond?: number
  /** Bytes waiting for serialization before all senders pause (default DEFAULT_LINK_QUEUE_BYTES) */
  queueBytes?: number
  /** Bytes one connection may have inside the link before its sender pauses (default DEFAULT_FLOW_WINDOW_BYTES) */
  flowWindowBytes?: number
  /** Minimum gap between two delivery ticks, ms: chunks due within it share a tick (default DEFAULT_TIMER_SLACK_MS) */
  timerSlackMs?: number
}

export interface LinkStats {
  name: string
  latencyMs: number
  bitsPerSecond: number
  /** Payload bytes delivered to receivers by this link */
  bytes: number
  /** Connections that ever used this link */
  connections: number
  /** Connections using it now */
  activeConnections: number
  /** Bytes queued or in flight right now */
  inFlightBytes: number
}

interface Packet {
  flow: LinkFlow
  /** `undefined` marks the end of the sender's stream */
  chunk: Buffer | undefined
  deliverAt: number
}

/** One connection's direction through a link; returned by `Link.pipe`. */
export class LinkFlow {
  readonly src: Readable
  readonly dst: Writable
  /** Bytes of this flow queued or in flight in the link */
  pending = 0
  closed = false
  paused = false
  private readonly link: Link
  private readonly onData: (chunk: Buffer) => void
  private readonly onEnd: () => void
  private readonly onDrain: () => void

  constructor (link: Link, src: Readable, dst: Writable) {
    this.link = link
    this.src = src
    this.dst = dst
    this.onData = (chunk) => { link.enqueue(this, chunk) }
    this.onEnd = () => { link.enqueue(this, undefined) }
    this.onDrain = () => { this.maybeResume() }
    src.on('data', this.onData)
    src.on('end', this.onEnd)
    dst.on('drain', this.onDrain)
  }

  /** Bytes this flow holds that the receiver has not flushed yet */
  held (): number {
    return this.pending + this.dst.writableLength
  }

  pauseIfFull (): void {
    if (this.closed || this.paused) return
    if (this.held() > this.link.flowWindowBytes || this.link.backlogBytes() > this.link.queueBytes) {
      this.paused = true
      this.src.pause()
      this.link.onFlowPaused(this)
    }
  }

  maybeResume (): void {
    if (this.closed || !this.paused) return
    // hysteresis: resume at half, so a sender is not toggled for every chunk
    if (this.held() <= this.link.flowWindowBytes / 2 && this.link.backlogBytes() <= this.link.queueBytes / 2) {
      this.paused = false
      this.link.onFlowResumed(this)
      this.src.resume()
    }
  }

  /** Detaches from both sockets; chunks still in the link are dropped. Idempotent. */
  close (): void {
    if (this.closed) return
    this.closed = true
    this.src.off('data', this.onData)
    this.src.off('end', this.onEnd)
    this.dst.off('drain', this.onDrain)
    this.link.onFlowClosed(this)
  }
}

export class Link {
  readonly name: string
  readonly latencyMs: number
  readonly bitsPerSecond: number
  readonly queueBytes: number
  readonly flowWindowBytes: number
  private readonly timerSlackMs: number
  /** When the last queued byte leaves the serializer (performance.now() ms) */
  private lastDeparture = 0
  /** Delay line: deliverAt never decreases along it, so it stays sorted by construction */
  private line: Packet[] = []
  private head = 0
  private deliveryTimer: ReturnType<typeof setTimeout> | undefined
  private resumeTimer: ReturnType<typeof setTimeout> | undefined
  private readonly pausedFlows = new Set<LinkFlow>()
  private bytes = 0
  private inFlight = 0
  private connections = 0
  private active = 0
  private closed = false

  constructor (init: LinkInit = {}) {
    this.name = init.name ?? 'link'
    this.latencyMs = init.latencyMs ?? 0
    this.bitsPerSecond = init.bitsPerSecond ?? Infinity
    this.queueBytes = init.queueBytes ?? DEFAULT_LINK_QUEUE_BYTES
    this.flowWindowBytes = init.flowWindowBytes ?? DEFAULT_FLOW_WINDOW_BYTES
    this.timerSlackMs = init.timerSlackMs ?? DEFAULT_TIMER_SLACK_MS
    if (!(this.latencyMs >= 0) || !(this.bitsPerSecond > 0) || !(this.queueBytes > 0) || !(this.flowWindowBytes > 0)) {
      throw new InvalidWanOptionsError(`link ${this.name}: latency must be >= 0, bandwidth, queue and window > 0`)
    }
  }

  /** Carries everything `src` emits to `dst` through this link, in order, and ends `dst` after `src` ends. */
  pipe (src: Readable, dst: Writable): LinkFlow {
    const flow = new LinkFlow(this, src, dst)
    this.connections++
    this.active++
    if (this.closed) flow.close()
    return flow
  }

  /** Bytes waiting for the serializer right now */
  backlogBytes (now = performance.now()): number {
    if (this.bitsPerSecond === Infinity) return 0
    return Math.max(0, this.lastDeparture - now) * this.bitsPerSecond / 8000
  }

  stats (): LinkStats {
    return {
      name: this.name,
      latencyMs: this.latencyMs,
      bitsPerSecond: this.bitsPerSecond,
      bytes: this.bytes,
      connections: this.connections,
      activeConnections: this.active,
      inFlightBytes: this.inFlight
    }
  }

  /** Stops all timers and drops what is in flight. Idempotent. */
  close (): void {
    this.closed = true
    clearTimeout(this.deliveryTimer)
    clearTimeout(this.resumeTimer)
    this.deliveryTimer = this.resumeTimer = undefined
    this.line = []
    this.head = 0
    this.inFlight = 0
    for (const flow of [...this.pausedFlows]) flow.close()
  }

  /** @internal called by LinkFlow */
  enqueue (flow: LinkFlow, chunk: Buffer | undefined): void {
    if (this.closed || flow.closed) return
    const now = performance.now()
    const size = chunk?.length ?? 0
    const serialization = size * 8000 / this.bitsPerSecond
    this.lastDeparture = Math.max(now, this.lastDeparture) + serialization
    this.line.push({ flow, chunk, deliverAt: this.lastDeparture + this.latencyMs })
    flow.pending += size
    this.inFlight += size
    this.armDelivery(now)
    if (chunk != null) flow.pauseIfFull()
  }

  /** @internal */
  onFlowPaused (flow: LinkFlow): void {
    this.pausedFlows.add(flow)
    this.armResume()
  }

  /** @internal */
  onFlowResumed (flow: LinkFlow): void {
    this.pausedFlows.delete(flow)
  }

  /** @internal */
  onFlowClosed (flow: LinkFlow): void {
    this.pausedFlows.delete(flow)
    this.active--
  }

  private armDelivery (now: number, minWait = 0): void {
    // the head is always the earliest packet, so an armed timer is never late for a new tail
    if (this.deliveryTimer != null || this.head >= this.line.length) return
    // minWait batches chunks due in the next moment into one tick instead of one timer each
    const wait = Math.max(minWait, this.line[this.head].deliverAt - now)
    this.deliveryTimer = setTimeout(() => { this.deliverDue() }, wait)
  }

  private armResume (): void {
    if (this.resumeTimer != null || this.bitsPerSecond === Infinity) return
    // the moment the serializer backlog has drained to half the queue
    const at = this.lastDeparture - (this.queueBytes / 2) * 8000 / this.bitsPerSecond
    const wait = Math.max(0, at - performance.now())
    this.resumeTimer = setTimeout(() => {
      this.resumeTimer = undefined
      this.resumePaused()
    }, wait)
  }

  private resumePaused (): void {
    for (const flow of [...this.pausedFlows]) flow.maybeResume()
    // some flows may still wait on the queue (others refilled it): look again later
    if (this.pausedFlows.size > 0 && this.backlogBytes() > this.queueBytes / 2) this.armResume()
  }

  private deliverDue (): void {
    this.deliveryTimer = undefined
    const now = performance.now()
    const line = this.line
    // never early: a chunk not yet due waits for the next tick, at most timerSlackMs late
    while (this.head < line.length && line[this.head].deliverAt <= now) {
      const packet = line[this.head]
      line[this.head++] = undefined as unknown as Packet
      this.deliver(packet)
    }
    if (this.head > 1024 && this.head * 2 > line.length) {
      this.line = line.slice(this.head)
      this.head = 0
    }
    this.resumePaused()
    this.armDelivery(now, this.timerSlackMs)
  }

  private deliver ({ flow, chunk }: Packet): void {
    const size = chunk?.length ?? 0
    flow.pending -= size
    this.inFlight -= size
    if (flow.closed) return
    const dst = flow.dst
    if (dst.destroyed || dst.writableEnded) return
    if (chunk == null) {
      dst.end()
      return
    }
    this.bytes += size
    dst.write(chunk)
  }
}
