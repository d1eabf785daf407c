/**
 * Errors shared by several protocols (a condition has one class, so the protocols that meet it
 * re-export it from here). Callers branch on `code`.
 */
import { MemfabricError } from '../common/errors.ts'

export { NotStartedError } from '../common/errors.ts'

/** A frame could not be decoded or had the wrong shape (codec level: a client reports the peer as ERR_PEER_MISBEHAVED). */
export class InvalidMessageError extends MemfabricError {
  static readonly code = 'ERR_INVALID_MESSAGE'
  constructor (message: string, options?: ErrorOptions) { super(message, InvalidMessageError.code, options) }
}

/** The remote peer broke the protocol: bad page or block, bad frame, unknown id, truncated stream. */
export class PeerMisbehavedError extends MemfabricError {
  static readonly code = 'ERR_PEER_MISBEHAVED'
  readonly peer: string
  readonly reason: string

  constructor (peer: string, reason: string, options?: ErrorOptions) {
    super(`peer ${peer} misbehaved: ${reason}`, PeerMisbehavedError.code, options)
    this.peer = peer
    this.reason = reason
  }
}

/** (server side, sent as a stream reset) the peer is not on the node's allow-list. */
export class PeerNotAllowedError extends MemfabricError {
  static readonly code = 'ERR_PEER_NOT_ALLOWED'
  constructor (message: string) { super(message, PeerNotAllowedError.code) }
}
