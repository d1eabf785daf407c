/**
 * Typed errors of the WAN emulator. Callers branch on `code`.
 */
import { MemfabricError } from '../../store/errors.ts'

export class InvalidWanOptionsError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_WAN_INVALID_OPTIONS') }
}

export class UnknownSiteError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_WAN_UNKNOWN_SITE') }
}

export class WanClosedError extends MemfabricError {
  constructor (message = 'WAN emulator is closed') { super(message, 'ERR_WAN_CLOSED') }
}
