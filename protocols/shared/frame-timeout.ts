/**
 * Bounded waits of the protocols: every inbound read has a timeout, re-armed per frame on
 * long-lived streams, and every write one of its own.
 */
import type { AbortOptions } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'
import { TransferTimeoutError } from '../pages/errors.ts'
import type { Misbehaved } from './misbehaved.ts'

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

/** A signal for one frame's read or write: aborts after `ms`, or with `signal`. */
export function frameSignal (ms: number, signal?: AbortSignal): AbortSignal {
  const timer = AbortSignal.timeout(ms)
  return signal == null ? timer : AbortSignal.any([timer, signal])
}

/** What reads a frame (a `LengthPrefixedStream`). */
export interface FrameReader {
  read (options?: AbortOptions): Promise<Uint8ArrayList>
}

/** The next frame of `lp`, or TransferTimeoutError (naming `peer`) when none comes within `ms`. */
export async function readFrame (lp: FrameReader, peer: string, ms: number, signal?: AbortSignal): Promise<Uint8ArrayList> {
  return withIdleTimeout(lp.read(), ms, () => new TransferTimeoutError(peer, ms), signal)
}

export interface ReadAnswerOptions {
  peer: string
  /** Idle timeout of this frame (ms). */
  timeout: number
  signal: AbortSignal
  misbehaved: Misbehaved
  /** Called before a TransferTimeoutError is thrown (a timeouts counter). */
  onTimeout(): void
  /** What a failed read says of the peer (the stream ended with answers owed, a frame too long). */
  failure(err: any): string
}

/**
 * The next answer frame of a client stream with requests outstanding: a timeout is counted and
 * thrown as is, an abort throws its reason, any other failure is the peer's (PeerMisbehavedError).
 */
export async function readAnswer (lp: FrameReader, options: ReadAnswerOptions): Promise<Uint8ArrayList> {
  try {
    return await readFrame(lp, options.peer, options.timeout, options.signal)
  } catch (err: any) {
    if (err instanceof TransferTimeoutError) {
      options.onTimeout()
      throw err
    }
    if (options.signal.aborted) {
      throw options.signal.reason
    }
    throw options.misbehaved(options.failure(err), err)
  }
}
