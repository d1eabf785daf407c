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

/** This host does not accept migrations from the offering peer (`--accept-from`). */
export class OfferRefusedError extends MemfabricError {
  static readonly code = 'ERR_OFFER_REFUSED'
  constructor (message: string) { super(message, OfferRefusedError.code) }
}

/** A name or out path an offer asks for is in use by another migration in progress. */
export class MigrationConflictError extends MemfabricError {
  static readonly code = 'ERR_MIGRATION_CONFLICT'
  constructor (message: string) { super(message, MigrationConflictError.code) }
}

/** An offer's out file exists and was not written by a migration of the offering peer. */
export class OutTakenError extends MemfabricError {
  static readonly code = 'ERR_OUT_TAKEN'
  constructor (message: string) { super(message, OutTakenError.code) }
}

/** The offering peer's partial images would pass its quota on this host. */
export class PeerQuotaError extends MemfabricError {
  static readonly code = 'ERR_PEER_QUOTA'
  constructor (message: string) { super(message, PeerQuotaError.code) }
}
