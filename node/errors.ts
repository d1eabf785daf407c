/** Typed errors of the node and the daemon. Callers branch on `code`. */
import { MemfabricError } from '../common/errors.ts'

export { NotStartedError } from '../common/errors.ts'

/** A peer id or address could not be dialled. */
export class PeerUnreachableError extends MemfabricError {
  static readonly code = 'ERR_PEER_UNREACHABLE'
  constructor (message: string, options?: ErrorOptions) { super(message, PeerUnreachableError.code, options) }
}

/** A migration offered by a peer tried to write outside `<repo>/out/`. */
export class OutPathError extends MemfabricError {
  static readonly code = 'ERR_OUT_PATH'
  constructor (message: string) { super(message, OutPathError.code) }
}

/** The fabric key file is not a valid pre-shared key. */
export class FabricKeyError extends MemfabricError {
  static readonly code = 'ERR_FABRIC_KEY'
  constructor (message: string) { super(message, FabricKeyError.code) }
}

/** The control API address is not a multiaddr with an IP (or DNS name) and a TCP port. */
export class InvalidApiAddressError extends MemfabricError {
  static readonly code = 'ERR_INVALID_API_ADDRESS'
  constructor (message: string) { super(message, InvalidApiAddressError.code) }
}
