/**
 * The zstd level of the frames sent to one peer, chosen by the link: as high as the link
 * leaves time for, never above the configured level.
 *
 * Compression runs on the event loop while the previous frame travels, so a level is right
 * when compressing a frame takes about as long as the link needs to carry the one before:
 * then the link stays busy and every byte was worth its CPU. The handler reports, per frame,
 * how long compression took and how long the write waited for the stream (the muxer's send
 * window, i.e. the link): a write that waits means the link is the limit and there is time
 * for a higher level; a write that never waits while compression takes time means the CPU is
 * the limit and the link idles, so the level drops. Measured on this 2-core host on 1 MiB
 * frames of synthetic VM pages: level 8 compresses 33 MB/s, 6 60, 3 143, 1 182 MB/s, and
 * level 3 sends 1.5 % more bytes than 8 — at 100 Mbit/s level 8 just keeps up, at 1 Gbit/s
 * only 1–3 do.
 */
import { logger } from '@libp2p/logger'

const log = logger('memfabric:pages:level')

/**
 * Lowest level used. Not 1: on real guest RAM a loaded host's levels 1–3 sent 4 % more WAN
 * bytes (13.3 against 12.8 MiB, guest-family, same images, two bench runs), and the issue's
 * rule is that time is not bought with bytes; level 6 sends what 8 does on synthetic pages at
 * twice its speed (60 against 33 MB/s).
 */
export const MIN_ADAPTIVE_LEVEL = 6
/** Frames a level is kept at least before it changes again. */
const HOLD_FRAMES = 2

export class AdaptiveLevel {
  private readonly max: number
  private readonly min: number
  private level: number
  private held = 0
  /** Smoothed ms per frame: compressing, and waiting for the write. */
  private compressMs = 0
  private waitMs = 0

  constructor (max: number, start = max) {
    this.max = max
    this.min = Math.min(MIN_ADAPTIVE_LEVEL, max)
    this.level = Math.max(this.min, Math.min(start, max))
  }

  get current (): number {
    return this.level
  }

  /** One frame went out: `compressMs` to compress it, `waitMs` its write waited. */
  observe (compressMs: number, waitMs: number): void {
    this.compressMs = this.compressMs === 0 ? compressMs : 0.7 * this.compressMs + 0.3 * compressMs
    this.waitMs = 0.7 * this.waitMs + 0.3 * waitMs
    if (++this.held < HOLD_FRAMES) return
    if (this.waitMs > this.compressMs * 0.5 && this.level < this.max) {
      // the link is the limit: spend the idle CPU on fewer bytes
      this.level++
      this.held = 0
      log('level %d (compress %d ms, write waited %d ms a frame)', this.level, Math.round(this.compressMs), Math.round(this.waitMs))
    } else if (this.waitMs < this.compressMs * 0.1 && this.compressMs > 2 && this.level > this.min) {
      // the link waits for the CPU
      this.level--
      this.held = 0
      log('level %d (compress %d ms, write waited %d ms a frame)', this.level, Math.round(this.compressMs), Math.round(this.waitMs))
    }
  }
}
