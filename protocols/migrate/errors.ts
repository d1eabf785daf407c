/** Typed errors of the migrate protocol. Callers branch on `code`. */
import { MemfabricError } from '../../common/errors.ts'

export class InvalidMigrateMessageError extends MemfabricError {
  static readonly code = 'ERR_INVALID_MIGRATE_MESSAGE'
  constructor (message: string) { super(message, InvalidMigrateMessageError.code) }
}

/** The stream to the destination broke before its report (it died, or the connection dropped). */
export class DestinationLostError extends MemfabricError {
  static readonly code = 'ERR_DESTINATION_LOST'
  constructor (message: string, options?: ErrorOptions) { super(message, DestinationLostError.code, options) }
}

/** The destination reported a failure; `code` is the destination's error code (it relays it, so has none of its own). */
export class MigrationFailedError extends MemfabricError {}
