/**
 * Bounded waits shared by the page and presence protocols.
 */

/**
 * Wait for `promise` at most `ms` (re-armed by every call, i.e. per frame) and no longer
 * than `signal`. The promise itself is left running: a timed-out read is never retried
 * (half a frame may have been consumed), the caller aborts the stream instead.
 */
export async function withIdleTimeout<T> (promise: Promise<T>, ms: number, onTimeout: () => Error, signal?: AbortSignal): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  let onAbort: (() => void) | undefined
  try {
    return await new Promise<T>((resolve, reject) => {
      // attach first: a losing promise must never become an unhandled rejection
      promise.then(resolve, reject)
      if (signal?.aborted === true) {
        reject(signal.reason)
        return
      }
      timer = setTimeout(() => { reject(onTimeout()) }, ms)
      if (signal != null) {
        onAbort = () => { reject(signal.reason) }
        signal.addEventListener('abort', onAbort, { once: true })
      }
    })
  } finally {
    clearTimeout(timer)
    if (onAbort != null) {
      signal?.removeEventListener('abort', onAbort)
    }
  }
}

/** Bytes a uint varint length prefix of `n` takes (for wire-byte accounting only). */
export function varintLength (n: number): number {
  let len = 1
  while (n >= 0x80) {
    n = Math.floor(n / 0x80)
    len++
  }
  return len
}

/** A counting semaphore: `acquire` waits while `limit` holders are active. */
export class Slots {
  readonly limit: number
  active = 0
  private readonly waiters: Array<() => void> = []

  constructor (limit: number) {
    this.limit = limit
  }

  async acquire (): Promise<void> {
    if (this.active < this.limit) {
      this.active++
      return
    }
    await new Promise<void>(resolve => { this.waiters.push(resolve) })
  }

  release (): void {
    const next = this.waiters.shift()
    if (next != null) {
      next() // the slot passes straight to the waiter
    } else {
      this.active--
    }
  }
}
