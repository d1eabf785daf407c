/**
 * The error a client raises when its peer broke the protocol, counted once per error made.
 */
import { PeerMisbehavedError } from '../pages/errors.ts'

/** Builds the PeerMisbehavedError for `reason` (and its cause), counting it. */
export type Misbehaved = (reason: string, cause?: unknown) => PeerMisbehavedError

/** A `Misbehaved` for `peer`; `count` is called for each error made (a service's misbehaved counter). */
export function misbehavedFor (peer: string, count: () => void): Misbehaved {
  return (reason, cause) => {
    count()
    return new PeerMisbehavedError(peer, reason, cause == null ? undefined : { cause })
  }
}
