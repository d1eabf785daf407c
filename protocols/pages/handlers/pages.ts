/**
 * Server handler of page requests: stream the pages asked back in order, batched into frames,
 * each page raw or, where the client offered a similar page it holds, compressed against it.
 */
import { zstdCompressSync, constants as zlibConstants } from 'node:zlib'
import type { Uint8ArrayList } from 'uint8arraylist'
import type { CID } from 'multiformats/cid'
import type { PageStore } from '../../../store/index.ts'
import { frameSignal } from '../../shared/frame-timeout.ts'
import { wireLength } from '../../shared/varint-length.ts'
import { DELTA_MAX_BYTES, RESPONSE_ENTRY_HEADER, RESPONSE_FRAME_HEADER, ZSTD_MIN_SAVING } from '../constants.ts'
import { deflateResponse, encodeResponseList, PAGE_DELTA, PAGE_MISSING, PAGE_RAW } from '../codec.ts'
import type { PageEntry, PageRequest } from '../codec.ts'
import type { Count } from '../counters.ts'
import { AdaptiveLevel } from '../adaptive-level.ts'
import { isZeroCid } from '../zero-page.ts'
import type { FrameWriter, RequestHandler } from './index.ts'

const MISSING_ENTRY: PageEntry = { kind: PAGE_MISSING, bytes: new Uint8Array(0) }

/** Peers whose compression level is remembered. */
const MAX_LEVEL_PEERS = 256

export interface PagesHandlerInit {
  store: PageStore
  /** The server closes a response frame once its payload would pass this many bytes. */
  responseFrameBytes: number
  zstdLevel: number
  /** Bound of each frame's write (ms). */
  idleTimeout: number
  count: Count
}

export class PagesHandler implements RequestHandler<PageRequest> {
  private readonly store: PageStore
  private readonly responseFrameBytes: number
  private readonly zstdLevel: number
  private readonly idleTimeout: number
  private readonly count: Count

  /** The zstd level of each peer's frames, chosen by its link (most recently served peers). */
  private readonly levels = new Map<string, AdaptiveLevel>()

  private levelFor (peer: string): AdaptiveLevel {
    let level = this.levels.get(peer)
    if (level == null) {
      level = new AdaptiveLevel(this.zstdLevel)
      if (this.levels.size >= MAX_LEVEL_PEERS) this.levels.delete(this.levels.keys().next().value!)
    } else {
      this.levels.delete(peer)
    }
    this.levels.set(peer, level)
    return level
  }

  constructor (init: PagesHandlerInit) {
    this.store = init.store
    this.responseFrameBytes = init.responseFrameBytes
    this.zstdLevel = init.zstdLevel
    this.idleTimeout = init.idleTimeout
    this.count = init.count
  }

  /**
   * Stream one request's pages back in order, batched into frames. A frame is a list of views
   * of the store's page bytes: copying pages into a fresh flat frame measured ~2.5 CPU-s/GB
   * more on this VM (new memory costs page faults), more than noise spends on the extra
   * pieces. Counters are bumped once per frame, not per page.
   */
  async handle (lp: FrameWriter, req: PageRequest, peer: string, signal: AbortSignal): Promise<void> {
    let entries: PageEntry[] = []
    let frameSize = RESPONSE_FRAME_HEADER
    let start = 0
    let seen = 0
    let pages = 0
    let bytesServed = 0
    let missing = 0

    const level = this.levelFor(peer)
    const flush = async (last: boolean): Promise<void> => {
      let frame: Uint8Array | Uint8ArrayList = encodeResponseList({ id: req.id, start, last, entries })
      let compressMs = -1
      if (req.compress === 'zstd') {
        const t = performance.now()
        frame = await deflateResponse(frame.subarray(), level.current, ZSTD_MIN_SAVING) ?? frame
        compressMs = performance.now() - t
      }
      start += entries.length
      entries = []
      frameSize = RESPONSE_FRAME_HEADER
      this.count(peer, 'pagesServed', pages)
      this.count(peer, 'bytesServed', bytesServed)
      this.count(peer, 'missingServed', missing)
      this.count(peer, 'wireBytesServed', wireLength(frame.byteLength))
      pages = bytesServed = missing = 0
      const t = performance.now()
      await lp.write(frame, { signal: frameSignal(this.idleTimeout, signal) })
      if (compressMs >= 0) level.observe(compressMs, performance.now() - t)
    }

    const refs = req.refs != null ? await this.referencePages(req.refs, signal) : undefined
    let index = 0
    for await (const { cid, bytes } of this.store.getMany(req.cids, { signal })) {
      let entry: PageEntry
      const ref = refs?.[index++]
      // zero pages are implicit and never sent; a page not held is reported missing
      if (bytes == null || isZeroCid(cid)) {
        entry = MISSING_ENTRY
        missing++
      } else {
        entry = (ref != null ? this.delta(bytes, ref) : undefined) ?? { kind: PAGE_RAW, bytes }
        pages++
        bytesServed += bytes.byteLength
      }
      if (entries.length > 0 && frameSize + RESPONSE_ENTRY_HEADER + entry.bytes.byteLength > this.responseFrameBytes) {
        await flush(false)
      }
      entries.push(entry)
      frameSize += RESPONSE_ENTRY_HEADER + entry.bytes.byteLength
      seen++
    }
    if (seen !== req.cids.length) {
      throw new Error(`store answered ${seen} of ${req.cids.length} pages`)
    }
    await flush(true)
    this.count(peer, 'requestsServed', 1)
  }

  /** The bytes of the reference pages this store holds (undefined for the rest). */
  private async referencePages (refs: Array<CID | null>, signal: AbortSignal): Promise<Array<Uint8Array | undefined>> {
    const out: Array<Uint8Array | undefined> = new Array(refs.length)
    const asked: number[] = []
    refs.forEach((ref, i) => { if (ref != null && !isZeroCid(ref)) asked.push(i) })
    if (asked.length === 0) {
      return out
    }
    let j = 0
    for await (const { bytes } of this.store.getMany(asked.map(i => refs[i]!), { signal })) {
      out[asked[j++]] = bytes
    }
    return out
  }

  /** The page compressed against a page the client holds, when that is small enough to pay. */
  private delta (page: Uint8Array, ref: Uint8Array): PageEntry | undefined {
    const bytes = zstdCompressSync(page, { dictionary: ref, params: { [zlibConstants.ZSTD_c_compressionLevel]: this.zstdLevel } } as any)
    return bytes.byteLength <= DELTA_MAX_BYTES ? { kind: PAGE_DELTA, bytes } : undefined
  }
}
