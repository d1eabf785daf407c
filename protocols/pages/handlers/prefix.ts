/**
 * Server handler of prefix requests: resolve each digest prefix to a page the store holds,
 * then answer as for a page request (an entry per prefix, missing where none is held).
 */
import type { CID } from 'multiformats/cid'
import type { PageStore } from '../../../store/index.ts'
import { digestToCid } from '../../../store/page.ts'
import { PREFIX_BYTES } from '../constants.ts'
import type { PrefixRequest } from '../codec.ts'
import { ZERO_PAGE_CID } from '../zero-page.ts'
import type { FrameWriter, RequestHandler } from './index.ts'
import type { PagesHandler } from './pages.ts'

export interface PrefixHandlerInit {
  store: PageStore
  /** Answers the resolved request. */
  pages: PagesHandler
}

export class PrefixHandler implements RequestHandler<PrefixRequest> {
  private readonly store: PageStore
  private readonly pages: PagesHandler

  constructor (init: PrefixHandlerInit) {
    this.store = init.store
    this.pages = init.pages
  }

  async handle (lp: FrameWriter, req: PrefixRequest, peer: string, signal: AbortSignal): Promise<void> {
    const cids = await this.resolvePrefixes(req.prefixes, signal)
    await this.pages.handle(lp, req.compress == null ? { id: req.id, cids } : { id: req.id, cids, compress: req.compress }, peer, signal)
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
