/**
 * Server handler of thin-manifest requests: an image's slots as zero runs and digest prefixes
 * (one frame saying "not held" when the image is not).
 */
import type { Logger } from '@libp2p/interface'
import { frameSignal } from '../../shared/frame-timeout.ts'
import { encodeThinAbsent, encodeThinFrames } from '../codec.ts'
import type { ThinRequest } from '../codec.ts'
import type { PageExchangeInit } from '../index.ts'
import type { FrameWriter, RequestHandler } from './index.ts'

export interface ThinHandlerInit {
  /** The node's image slots; without it every image is answered "not held". */
  slots?: PageExchangeInit['slots']
  zstdLevel: number
  /** Bound of each frame's write (ms). */
  idleTimeout: number
  log: Logger
}

export class ThinHandler implements RequestHandler<ThinRequest> {
  private readonly slots?: PageExchangeInit['slots']
  private readonly zstdLevel: number
  private readonly idleTimeout: number
  private readonly log: Logger

  constructor (init: ThinHandlerInit) {
    this.slots = init.slots
    this.zstdLevel = init.zstdLevel
    this.idleTimeout = init.idleTimeout
    this.log = init.log
  }

  async handle (lp: FrameWriter, req: ThinRequest, peer: string, signal: AbortSignal): Promise<void> {
    let sent = 0
    try {
      if (this.slots == null) throw new Error('no manifests served')
      for await (const frame of encodeThinFrames(req.id, this.slots(req.thin, { signal }), this.zstdLevel)) {
        await lp.write(frame, { signal: frameSignal(this.idleTimeout, signal) })
        sent++
      }
    } catch (err: any) {
      // an image not held is an answer, not a failure; a stream already answering must fail
      if (sent > 0 || signal.aborted) throw err
      this.log('thin manifest of %c not served - %e', req.thin, err)
      await lp.write(encodeThinAbsent(req.id), { signal: frameSignal(this.idleTimeout, signal) })
    }
  }
}
