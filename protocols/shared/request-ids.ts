/**
 * Request ids of a pipelined protocol: a uint32 counter that rolls over to 0, so a client
 * that lives long never sends an id the codec rejects.
 */

/** Largest id a request frame carries (uint32). */
export const MAX_REQUEST_ID = 0xffffffff

/** Allocates request ids in order, rolling over after MAX_REQUEST_ID. */
export class RequestIds {
  private nextId = 0

  /** The next id (ids in flight at once never collide: a window is far below 2^32). */
  take (): number {
    const id = this.nextId
    this.nextId = this.nextId === MAX_REQUEST_ID ? 0 : this.nextId + 1
    return id
  }
}
