import { MemfabricError } from '../../store/errors.ts'

export class InvalidMigrateMessageError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_INVALID_MIGRATE_MESSAGE') }
}

/** The stream to the destination broke before its report (it died, or the connection dropped). */
export class DestinationLostError extends MemfabricError {
  constructor (message: string, options?: ErrorOptions) { super(message, 'ERR_DESTINATION_LOST', options) }
}

/** The destination reported a failure; `code` is the destination's error code. */
export class MigrationFailedError extends MemfabricError {}
