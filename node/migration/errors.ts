import { MemfabricError } from '../../store/errors.ts'

/** Nobody reachable holds some pages; re-running the migration fetches only what is missing. */
export class PagesUnavailableError extends MemfabricError {
  readonly missing: number
  constructor (message: string, missing: number) {
    super(message, 'ERR_PAGES_UNAVAILABLE')
    this.missing = missing
  }
}

export class ManifestUnavailableError extends MemfabricError {
  constructor (message: string, options?: ErrorOptions) { super(message, 'ERR_MANIFEST_UNAVAILABLE', options) }
}
