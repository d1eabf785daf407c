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

/** The text of one progress line (pure; exported for tests). */
export function renderProgress (label: string, doneBytes: number, totalBytes: number, elapsedMs: number, width = 80): string {
  const fraction = totalBytes > 0 ? Math.min(1, doneBytes / totalBytes) : 0
  const filled = Math.round(fraction * BAR_WIDTH)
  const bar = '#'.repeat(filled) + '-'.repeat(BAR_WIDTH - filled)
  const rate = elapsedMs > 0 ? doneBytes / (elapsedMs / 1000) : 0
  const eta = rate > 0 ? (totalBytes - doneBytes) / rate : Number.NaN
  const pct = `${(fraction * 100).toFixed(0).padStart(3)}%`
  const line = `${label} ${pct} [${bar}] ${formatBytes(doneBytes)}/${formatBytes(totalBytes)}  ${formatRate(rate)}  ETA ${formatDuration(eta)}`
  return line.length > width - 1 ? line.slice(0, width - 1) : line
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

  return {
    update (update) {
      const t = now()
      if (t - start < delay || t - lastDraw < interval) {
        return
      }
      lastDraw = t
      drawn = true
      const label = update.phase !== '' ? update.phase : options.label
      const line = renderProgress(label, update.done * unitBytes, update.total * unitBytes, t - start, stream.columns ?? 80)
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
