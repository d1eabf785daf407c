/**
 * Server handler of prefix requests: resolve each digest prefix to a page the store holds,
 * then answer as for a page request (an entry per prefix, missing where none is held).
 */
import type { CID } from 'multiformats/cid'
import type { PageStore } from '../../../store/index.ts'
import { digestToCid } from '../../../store/page.ts'
import { PREFIX_BYTES } from '../constants.ts'
import { encodeHeldResponse } from '../codec.ts'
import type { PrefixRequest } from '../codec.ts'
import { frameSignal } from '../../shared/frame-timeout.ts'
import { ZERO_PAGE_CID } from '../zero-page.ts'
import type { FrameWriter, RequestHandler } from './index.ts'
import type { PagesHandler } from './pages.ts'

export interface PrefixHandlerInit {
  store: PageStore
  /** Bound of the held frame's write (ms). */
  idleTimeout: number
  /** Answers the resolved request. */
  pages: PagesHandler
}

export class PrefixHandler implements RequestHandler<PrefixRequest> {
  private readonly store: PageStore
  private readonly pages: PagesHandler
  private readonly idleTimeout: number

  constructor (init: PrefixHandlerInit) {
    this.store = init.store
    this.idleTimeout = init.idleTimeout
    this.pages = init.pages
  }

  async handle (lp: FrameWriter, req: PrefixRequest, peer: string, signal: AbortSignal): Promise<void> {
    if (req.held === true) {
      await this.answerHeld(lp, req, signal)
      return
    }
    const cids = await this.resolvePrefixes(req.prefixes, signal)
    await this.pages.handle(lp, req.compress == null ? { id: req.id, cids } : { id: req.id, cids, compress: req.compress }, peer, signal)
  }

  /** Which prefixes a page is held for, as one held frame. */
  private async answerHeld (lp: FrameWriter, req: PrefixRequest, signal: AbortSignal): Promise<void> {
    const count = req.prefixes.byteLength / PREFIX_BYTES
    const digests = await this.store.resolvePrefixes?.(req.prefixes, { signal })
    const bits = new Uint8Array(Math.ceil(count / 8))
    for (let i = 0; i < count; i++) {
      if (digests?.[i] != null) bits[i >> 3] |= 1 << (i & 7)
    }
    await lp.write(encodeHeldResponse({ id: req.id, count, bits }), { signal: frameSignal(this.idleTimeout, signal) })
  }

  /** The CID of a held page per prefix; the zero page's CID (answered as missing) where none is held. */
  private async resolvePrefixes (prefixes: Uint8Array, signal: AbortSignal): Promise<CID[]> {
    const digests = await this.store.resolvePrefixes?.(prefixes, { signal })
    const cids: CID[] = new Array(prefixes.byteLength / PREFIX_BYTES)
    for (let i = 0; i < cids.length; i++) {
      const digest = digests?.[i]
      cids[i] = digest == null ? ZERO_PAGE_CID : digestToCid(digest)
    }
    return cids
  }
}
