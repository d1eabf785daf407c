/**
 * A counting semaphore: what bounds the requests a server works on at once per stream.
 */

/** `acquire` waits while `limit` holders are active. */
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
