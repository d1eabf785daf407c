/**
 * Errors of the provider-records protocol. Callers branch on `code`.
 *
 * | code                        | when                                                    |
 * |-----------------------------|---------------------------------------------------------|
 * | ERR_INVALID_MESSAGE         | a frame did not decode or failed validation             |
 * | ERR_UNSUPPORTED_CID         | a CID is not sha2-256 (kad keys need a sha2-256 digest)  |
 * | ERR_PROTOCOL                | the remote answered out of order or with the wrong type |
 * | ERR_NOT_STARTED             | the service was used before `start()` / after `stop()`  |
 * | ERR_RECORD_STORE            | the level backend failed                                |
 */
import { MemfabricError } from '../../common/errors.ts'

export { InvalidMessageError, NotStartedError } from '../errors.ts'

export class UnsupportedCidError extends MemfabricError {
  static readonly code = 'ERR_UNSUPPORTED_CID'
  constructor (message: string) { super(message, UnsupportedCidError.code) }
}

export class ProtocolError extends MemfabricError {
  static readonly code = 'ERR_PROTOCOL'
  // the class name alone would not say which protocol in a log line
  override name = 'ProvidersProtocolError'
  constructor (message: string) { super(message, ProtocolError.code) }
}

export class RecordStoreError extends MemfabricError {
  static readonly code = 'ERR_RECORD_STORE'
  constructor (message: string, options?: ErrorOptions) { super(message, RecordStoreError.code, options) }
}
