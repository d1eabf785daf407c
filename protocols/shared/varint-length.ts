/**
 * Wire-byte accounting of length-prefixed frames.
 */

/** Bytes a uint varint length prefix of `n` takes (for wire-byte accounting only). */
export function varintLength (n: number): number {
  let len = 1
  while (n >= 0x80) {
    n = Math.floor(n / 0x80)
    len++
  }
  return len
}

/** Bytes a frame of `length` bytes takes on the wire, its length prefix included. */
export function wireLength (length: number): number {
  return length + varintLength(length)
}
