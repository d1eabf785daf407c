/**
 * A one-line progress bar on stderr: percentage, bar, amount, rate and ETA.
 *
 * It stays silent for the first second (quick operations print nothing) and is only enabled
 * by the runner when stderr is a terminal and `--json` is off.
 */
import type { ProgressUpdate } from '../node/api/index.ts'
import { formatBytes, formatDuration, formatRate } from './output.ts'

/** What the runner hands to a progress bar: a terminal stream. */
export interface ProgressStream {
  write (chunk: string): unknown
  columns?: number
}

export interface ProgressOptions {
  /** Label before the bar, e.g. `import`. */
  label: string
  /** Bytes per unit of `done`/`total` (1 when the api counts bytes, 4096 for pages). */
  unitBytes?: number
  /** Wait this long before the first draw (ms). */
  delayMs?: number
  /** Minimum time between two draws (ms). */
  intervalMs?: number
  /** Clock, for tests. */
  now?(): number
}

export const DEFAULT_PROGRESS_DELAY_MS = 1000
export const DEFAULT_PROGRESS_INTERVAL_MS = 100
const BAR_WIDTH = 24
/** The rate is measured over about this much recent time. */
const RATE_WINDOW_MS = 5000

export interface Progress {
  /** Pass as `onProgress` to the api. */
  update (update: ProgressUpdate): void
  /** Erase the line (call on success and on failure). */
  done (): void
}

/** A progress bar that draws nothing at all. */
export const silentProgress: Progress = {
  update () {},
  done () {}
}

/**
 * The text of one progress line (pure; exported for tests). `rate` is bytes/s; the bar
 * shrinks (or goes) so that the line fits in `width` columns.
 */
export function renderProgress (label: string, doneBytes: number, totalBytes: number, rate: number, width = 80): string {
  const fraction = totalBytes > 0 ? Math.min(1, doneBytes / totalBytes) : 0
  const eta = rate > 0 ? Math.max(0, totalBytes - doneBytes) / rate : Number.NaN
  const pct = `${(fraction * 100).toFixed(0).padStart(3)}%`
  const tail = `${formatBytes(doneBytes)}/${formatBytes(totalBytes)}  ${formatRate(rate)}  ETA ${formatDuration(eta)}`
  const room = width - 1 - label.length - pct.length - tail.length - 5
  const barWidth = Math.min(BAR_WIDTH, room)
  if (barWidth < 5) {
    return `${label} ${pct} ${tail}`.slice(0, Math.max(0, width - 1))
  }
  const filled = Math.round(fraction * barWidth)
  return `${label} ${pct} [${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ${tail}`
}

/** A progress bar drawing on `stream` (a TTY). */
export function createProgress (stream: ProgressStream, options: ProgressOptions): Progress {
  const now = options.now ?? (() => performance.now())
  const unitBytes = options.unitBytes ?? 1
  const delay = options.delayMs ?? DEFAULT_PROGRESS_DELAY_MS
  const interval = options.intervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS
  const start = now()
  let lastDraw = Number.NEGATIVE_INFINITY
  let drawn = false
  // recent (time, bytes) samples: the rate and ETA follow the current speed, not the average
  const samples: Array<[number, number]> = [[start, 0]]

  return {
    update (update) {
      const t = now()
      if (t - start < delay || t - lastDraw < interval) {
        return
      }
      lastDraw = t
      drawn = true
      const doneBytes = update.done * unitBytes
      samples.push([t, doneBytes])
      while (samples.length > 2 && t - samples[0][0] > RATE_WINDOW_MS) {
        samples.shift()
      }
      const [t0, d0] = samples[0]
      const rate = t > t0 ? (doneBytes - d0) / ((t - t0) / 1000) : 0
      const label = update.phase !== '' ? update.phase : options.label
      const line = renderProgress(label, doneBytes, update.total * unitBytes, rate, stream.columns ?? 80)
      stream.write(`\r${line}\x1b[K`)
    },
    done () {
      if (drawn) {
        stream.write('\r\x1b[K')
        drawn = false
      }
    }
  }
}
