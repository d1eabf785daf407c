/**
 * Start and stop of a streaming protocol service (pages, presence): its handler registered
 * with libp2p's per-connection limits, one shutdown signal that ends every pending read and
 * store call, and its open streams aborted on stop. Both are idempotent.
 */
import type { StreamHandler } from '@libp2p/interface'
import type { ProtocolRegistrar } from './handle-protocol.ts'
import type { OpenStreams } from './open-streams.ts'

export interface ServiceLifecycleInit {
  registrar: ProtocolRegistrar
  protocol: string
  handler: StreamHandler
  maxInboundStreams: number
  maxOutboundStreams: number
  /** Aborted by stop(). */
  streams: Pick<OpenStreams, 'abortAll'>
  /** The error stop() ends pending work and open streams with. */
  stopped(): Error
}

export class ServiceLifecycle {
  private readonly init: ServiceLifecycleInit
  private started = false
  private shutdown = new AbortController()

  constructor (init: ServiceLifecycleInit) {
    this.init = init
  }

  isStarted (): boolean {
    return this.started
  }

  /** Aborted by stop(); a new one after each start(). */
  get signal (): AbortSignal {
    return this.shutdown.signal
  }

  async start (): Promise<void> {
    if (this.started) {
      return
    }
    this.shutdown = new AbortController()
    await this.init.registrar.handle(this.init.protocol, this.init.handler, {
      maxInboundStreams: this.init.maxInboundStreams,
      maxOutboundStreams: this.init.maxOutboundStreams
    })
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) {
      return
    }
    this.started = false
    this.shutdown.abort(this.init.stopped())
    await this.init.registrar.unhandle(this.init.protocol)
    this.init.streams.abortAll(this.init.stopped())
  }
}
