import { MemfabricError } from '../../store/errors.ts'

export class InvalidSiteMessageError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_INVALID_SITE_MESSAGE') }
}
