/** Typed errors of a migration (pull and live rounds). Callers branch on `code`. */
import { MemfabricError } from '../../common/errors.ts'

/** Nobody reachable holds some pages; re-running the migration fetches only what is missing. */
export class PagesUnavailableError extends MemfabricError {
  static readonly code = 'ERR_PAGES_UNAVAILABLE'
  readonly missing: number
  constructor (message: string, missing: number) {
    super(message, PagesUnavailableError.code)
    this.missing = missing
  }
}

/** The image's manifest could not be read locally nor fetched from a peer. */
export class ManifestUnavailableError extends MemfabricError {
  static readonly code = 'ERR_MANIFEST_UNAVAILABLE'
  constructor (message: string, options?: ErrorOptions) { super(message, ManifestUnavailableError.code, options) }
}

/** A live migration's pause (or resume) command failed. */
export class PauseCommandError extends MemfabricError {
  static readonly code = 'ERR_PAUSE_COMMAND'
  constructor (message: string, options?: ErrorOptions) { super(message, PauseCommandError.code, options) }
}
