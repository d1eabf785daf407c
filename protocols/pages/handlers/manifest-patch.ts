/**
 * Server handler of manifest-patch requests: how an image differs from the older image the
 * node uses as its basis (one frame saying "no basis" without one).
 */
import { frameSignal } from '../../shared/frame-timeout.ts'
import { encodePatchResponse } from '../codec.ts'
import type { PatchRequest } from '../codec.ts'
import type { PageExchangeInit } from '../index.ts'
import type { FrameWriter, RequestHandler } from './index.ts'

export interface PatchHandlerInit {
  /** The node's patches; without it every image is answered "no basis". */
  patch?: PageExchangeInit['patch']
  /** Bound of each frame's write (ms). */
  idleTimeout: number
}

export class PatchHandler implements RequestHandler<PatchRequest> {
  private readonly patch?: PageExchangeInit['patch']
  private readonly idleTimeout: number

  constructor (init: PatchHandlerInit) {
    this.patch = init.patch
    this.idleTimeout = init.idleTimeout
  }

  async handle (lp: FrameWriter, req: PatchRequest, peer: string, signal: AbortSignal): Promise<void> {
    const patch = await this.patch?.(req.patch, { signal })
    for (const frame of encodePatchResponse(req.id, patch)) {
      await lp.write(frame, { signal: frameSignal(this.idleTimeout, signal) })
    }
  }
}
