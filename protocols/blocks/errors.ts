/** Typed errors of the block exchange. Callers branch on `code`. */
import { MemfabricError } from '../../common/errors.ts'

/**
 * A peer that sends a block not hashing to its CID is a `PeerMisbehavedError`
 * (ERR_PEER_MISBEHAVED), the page exchange's condition; `BlockVerificationError` is its former name.
 */
export { PeerMisbehavedError, PeerMisbehavedError as BlockVerificationError, PeerNotAllowedError } from '../errors.ts'

export class InvalidBlockMessageError extends MemfabricError {
  static readonly code = 'ERR_INVALID_BLOCK_MESSAGE'
  constructor (message: string) { super(message, InvalidBlockMessageError.code) }
}
