import { serviceCapabilities } from '@libp2p/interface'
import type { AbortOptions, Connection, Logger, PeerId, Startable, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { lpStream } from '@libp2p/utils'
import { frameSignal } from '../shared/frame-timeout.ts'
import { handleProtocol } from '../shared/handle-protocol.ts'
import { protocolId } from '../shared/protocol-id.ts'
import { decodeAnswer, decodeOffer, encodeAnswer, encodeOffer } from './codec.ts'
import type { Offer } from './codec.ts'
import {
  DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_INBOUND_STREAMS, DEFAULT_PROGRESS_INTERVAL, MAX_FRAME_SIZE,
  PROTOCOL_NAME, PROTOCOL_PREFIX, PROTOCOL_VERSION
} from './constants.ts'
import { DestinationLostError, InvalidMigrateMessageError, MigrationFailedError } from './errors.ts'
import type { MigrateOfferComponents, MigrateOfferInit } from './index.ts'

/**
 * The source offers an image; the destination pulls it (from the nearest holders, the source
 * last), streaming progress back, then a report or an error.
 */
export class MigrateOffer implements Startable {
  readonly protocol: string
  private readonly components: MigrateOfferComponents
  private readonly init: MigrateOfferInit
  private readonly log: Logger
  private started = false

  constructor (components: MigrateOfferComponents, init: MigrateOfferInit) {
    this.components = components
    this.init = init
    this.protocol = protocolId(init.protocolPrefix ?? PROTOCOL_PREFIX, PROTOCOL_NAME, PROTOCOL_VERSION)
    this.log = components.logger.forComponent('memfabric:migrate')
  }

  readonly [Symbol.toStringTag] = 'memfabric/migrate-offer'
  readonly [serviceCapabilities] = ['@memfabric/migrate']

  async start (): Promise<void> {
    await handleProtocol(this.components.registrar, this.protocol, async (stream, connection) => this.handle(stream, connection), (err, connection) => {
      this.log.error('offer from %p failed - %e', connection.remotePeer, err)
    }, { maxInboundStreams: DEFAULT_MAX_INBOUND_STREAMS })
    this.started = true
  }

  async stop (): Promise<void> {
    await this.components.registrar.unhandle(this.protocol)
    this.started = false
  }

  isStarted (): boolean {
    return this.started
  }

  /** Offer an image to `peer` and wait for its report. */
  async offer (peer: PeerId | Multiaddr, offer: Offer, options: AbortOptions & { onProgress?(progress: any): void } = {}): Promise<any> {
    const stream = await this.components.connectionManager.openStream(peer, this.protocol, { signal: options.signal })
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_FRAME_SIZE })
      await lp.write(encodeOffer(offer), { signal: options.signal })
      while (true) {
        const answer = decodeAnswer(await lp.read({ signal: frameSignal(this.init.idleTimeout ?? DEFAULT_IDLE_TIMEOUT, options.signal) }))
        if ('progress' in answer) {
          options.onProgress?.(answer.progress)
        } else if ('report' in answer) {
          await stream.close({ signal: options.signal })
          return answer.report
        } else {
          await stream.close({ signal: options.signal })
          throw new MigrationFailedError(`destination: ${answer.error.message}`, answer.error.code)
        }
      }
    } catch (err: any) {
      stream.abort(err)
      if (err instanceof MigrationFailedError || err instanceof InvalidMigrateMessageError || options.signal?.aborted === true) throw err
      // a bare 'Unexpected EOF' says nothing to the operator of the source
      throw new DestinationLostError(`lost the destination ${peer.toString()} before its report (${err.message}); re-running the migration fetches only what it lacks`, { cause: err })
    }
  }

  private async handle (stream: Stream, connection: Connection): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: MAX_FRAME_SIZE })
    const offer = decodeOffer(await lp.read({ signal: AbortSignal.timeout(this.init.idleTimeout ?? DEFAULT_IDLE_TIMEOUT) }))
    const controller = new AbortController()
    stream.addEventListener('close', () => { controller.abort() })
    let writing = Promise.resolve()
    const send = (answer: Parameters<typeof encodeAnswer>[0]): Promise<void> => {
      writing = writing.then(async () => lp.write(encodeAnswer(answer))).catch(() => {})
      return writing
    }
    let last = 0
    let latest: unknown
    const heartbeat = setInterval(() => { if (latest != null) void send({ progress: latest }) }, DEFAULT_PROGRESS_INTERVAL * 4)
    try {
      const report = await this.init.onOffer(offer, connection.remotePeer, {
        signal: controller.signal,
        onProgress: (progress) => {
          latest = progress
          const now = Date.now()
          if (now - last >= (this.init.progressInterval ?? DEFAULT_PROGRESS_INTERVAL)) {
            last = now
            void send({ progress })
          }
        }
      })
      clearInterval(heartbeat)
      await send({ report })
    } catch (err: any) {
      clearInterval(heartbeat)
      await send({ error: { code: err.code ?? 'ERR_INTERNAL', message: err.message ?? String(err) } })
    }
    await writing
    await stream.close().catch(() => {})
  }
}
