import { MemfabricError } from '../../store/errors.ts'

export class InvalidMigrateMessageError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_INVALID_MIGRATE_MESSAGE') }
}

/** The destination reported a failure; `code` is the destination's error code. */
export class MigrationFailedError extends MemfabricError {}
