/**
 * The server side of the page exchange: one handler per kind of request, each writing its
 * answer frames in order on the request's stream. `answerRequest` picks the handler by kind.
 *
 * @example
 * ```ts
 * const answer = requestHandlers({ store, responseFrameBytes, zstdLevel, idleTimeout, count, log })
 * await answer(lp, decodeAnyRequest(frame, maxCids), peer, signal)
 * ```
 */
import type { AbortOptions, Logger } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'
import type { PageStore } from '../../../store/index.ts'
import { isPatchRequest, isPrefixRequest, isThinRequest } from '../codec.ts'
import type { AnyRequest } from '../codec.ts'
import type { Count } from '../counters.ts'
import type { PageExchangeInit } from '../index.ts'
import { PatchHandler } from './manifest-patch.ts'
import { PagesHandler } from './pages.ts'
import { PrefixHandler } from './prefix.ts'
import { ThinHandler } from './thin.ts'

/** Where a handler writes its answer frames (a `LengthPrefixedStream`). */
export interface FrameWriter {
  write (data: Uint8Array | Uint8ArrayList, options?: AbortOptions): Promise<void>
}

export interface RequestHandler<R> {
  /** Answer `req` of `peer` on `lp`; `signal` ends the work with the stream or the service. */
  handle (lp: FrameWriter, req: R, peer: string, signal: AbortSignal): Promise<void>
}

export interface RequestHandlersInit {
  store: PageStore
  responseFrameBytes: number
  zstdLevel: number
  /** Bound of each frame's write (ms). */
  idleTimeout: number
  count: Count
  patch?: PageExchangeInit['patch']
  slots?: PageExchangeInit['slots']
  log: Logger
}

/** Answers a request of any kind. */
export type AnswerRequest = (lp: FrameWriter, req: AnyRequest, peer: string, signal: AbortSignal) => Promise<void>

export function requestHandlers (init: RequestHandlersInit): AnswerRequest {
  const pages = new PagesHandler(init)
  const prefix = new PrefixHandler({ store: init.store, idleTimeout: init.idleTimeout, pages })
  const patch = new PatchHandler(init)
  const thin = new ThinHandler(init)
  return async (lp, req, peer, signal) => {
    if (isPatchRequest(req)) {
      await patch.handle(lp, req, peer, signal)
    } else if (isThinRequest(req)) {
      await thin.handle(lp, req, peer, signal)
    } else if (isPrefixRequest(req)) {
      await prefix.handle(lp, req, peer, signal)
    } else {
      await pages.handle(lp, req, peer, signal)
    }
  }
}
