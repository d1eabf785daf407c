/**
 * Typed errors of the page exchange. Callers branch on `code`.
 */
import { MemfabricError } from '../../store/errors.ts'

/** A frame could not be decoded or had the wrong shape. */
export class InvalidMessageError extends MemfabricError {
  constructor (message: string, options?: ErrorOptions) { super(message, 'ERR_INVALID_MESSAGE', options) }
}

/** The remote peer broke the protocol: bad page, bad frame, unknown id, truncated stream. */
export class PeerMisbehavedError extends MemfabricError {
  readonly peer: string
  readonly reason: string

  constructor (peer: string, reason: string, options?: ErrorOptions) {
    super(`peer ${peer} misbehaved: ${reason}`, 'ERR_PEER_MISBEHAVED', options)
    this.peer = peer
    this.reason = reason
  }
}

/** No frame arrived within the idle timeout while work was outstanding. */
export class TransferTimeoutError extends MemfabricError {
  readonly peer: string

  constructor (peer: string, ms: number) {
    super(`no frame from peer ${peer} for ${ms} ms`, 'ERR_TRANSFER_TIMEOUT')
    this.peer = peer
  }
}

/** A CID given to `fetch`/`query` cannot name a page (must be CIDv1 raw sha2-256). */
export class InvalidPageCidError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_INVALID_PAGE_CID') }
}

/** A peer opened more streams than the server allows per peer. */
export class TooManyStreamsError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_TOO_MANY_STREAMS') }
}

/** The service is not started (or was stopped). */
export class NotStartedError extends MemfabricError {
  constructor (message = 'service is not started') { super(message, 'ERR_NOT_STARTED') }
}

/** (server side, sent as a stream reset) the peer is not on the node's allow-list. */
export class PeerNotAllowedError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_PEER_NOT_ALLOWED') }
}
