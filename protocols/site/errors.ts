/** Typed errors of the site protocol. Callers branch on `code`. */
import { MemfabricError } from '../../common/errors.ts'

export class InvalidSiteMessageError extends MemfabricError {
  static readonly code = 'ERR_INVALID_SITE_MESSAGE'
  constructor (message: string) { super(message, InvalidSiteMessageError.code) }
}
