/**
 * Typed errors of the WAN emulator. Callers branch on `code`.
 */
import { MemfabricError } from '../../common/errors.ts'

export class InvalidWanOptionsError extends MemfabricError {
  static readonly code = 'ERR_WAN_INVALID_OPTIONS'
  constructor (message: string) { super(message, InvalidWanOptionsError.code) }
}

export class UnknownSiteError extends MemfabricError {
  static readonly code = 'ERR_WAN_UNKNOWN_SITE'
  constructor (message: string) { super(message, UnknownSiteError.code) }
}

export class WanClosedError extends MemfabricError {
  static readonly code = 'ERR_WAN_CLOSED'
  constructor (message = 'WAN emulator is closed') { super(message, WanClosedError.code) }
}
