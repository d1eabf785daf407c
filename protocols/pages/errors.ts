/**
 * Typed errors of the page exchange. Callers branch on `code`.
 */
import { MemfabricError } from '../../common/errors.ts'

export { InvalidMessageError, NotStartedError, PeerMisbehavedError, PeerNotAllowedError } from '../errors.ts'

/** No frame arrived within the idle timeout while work was outstanding. */
export class TransferTimeoutError extends MemfabricError {
  static readonly code = 'ERR_TRANSFER_TIMEOUT'
  readonly peer: string

  constructor (peer: string, ms: number) {
    super(`no frame from peer ${peer} for ${ms} ms`, TransferTimeoutError.code)
    this.peer = peer
  }
}

/** A CID given to `fetch`/`query` cannot name a page (must be CIDv1 raw sha2-256). */
export class InvalidPageCidError extends MemfabricError {
  static readonly code = 'ERR_INVALID_PAGE_CID'
  constructor (message: string) { super(message, InvalidPageCidError.code) }
}

/** A peer opened more streams than the server allows per peer. */
export class TooManyStreamsError extends MemfabricError {
  static readonly code = 'ERR_TOO_MANY_STREAMS'
  constructor (message: string) { super(message, TooManyStreamsError.code) }
}
