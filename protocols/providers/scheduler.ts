/**
 * The service's background work between start and stop: the record store's load at start,
 * and the periodic tasks (republish, sweep). A task never overlaps itself; stop waits for
 * every task to settle.
 */
import { logger } from '@libp2p/logger'

const log = logger('memfabric:providers')

export class Scheduler {
  private readonly signal: AbortSignal
  private timers: Array<ReturnType<typeof setTimeout>> = []
  private readonly tasks = new Set<Promise<unknown>>()

  /** Tasks end, and no more start, once `signal` is aborted. */
  constructor (signal: AbortSignal) {
    this.signal = signal
  }

  /** Run `fn` once, now, in the background; a failure is logged as `what` (unless stopping). */
  once (what: string, fn: (signal: AbortSignal) => Promise<unknown>): void {
    this.spawn(what, fn, () => {})
  }

  /** Run `fn` every `interval` ms (never overlapping itself) until the signal aborts. */
  every (interval: number, fn: (signal: AbortSignal) => Promise<unknown>): void {
    const tick = (): void => {
      if (this.signal.aborted) return
      this.spawn('periodic task', fn, () => {
        if (!this.signal.aborted) this.timers.push(setTimeout(tick, interval).unref())
      })
    }
    this.timers.push(setTimeout(tick, interval).unref())
  }

  /** Cancel the timers and wait for the running tasks (abort the signal first). */
  async stop (): Promise<void> {
    for (const t of this.timers) clearTimeout(t)
    this.timers = []
    await Promise.allSettled([...this.tasks])
  }

  private spawn (what: string, fn: (signal: AbortSignal) => Promise<unknown>, then: () => void): void {
    const signal = this.signal
    const task = fn(signal)
      .catch(err => { if (!signal.aborted) log.error('%s failed - %e', what, err) })
      .finally(() => {
        this.tasks.delete(task)
        then()
      })
    this.tasks.add(task)
  }
}
