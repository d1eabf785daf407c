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

export class InvalidMessageError extends Error {
  static readonly code = 'ERR_INVALID_MESSAGE'
  readonly code = InvalidMessageError.code
  override name = 'InvalidMessageError'
}

export class UnsupportedCidError extends Error {
  static readonly code = 'ERR_UNSUPPORTED_CID'
  readonly code = UnsupportedCidError.code
  override name = 'UnsupportedCidError'
}

export class ProtocolError extends Error {
  static readonly code = 'ERR_PROTOCOL'
  readonly code = ProtocolError.code
  override name = 'ProvidersProtocolError'
}

export class NotStartedError extends Error {
  static readonly code = 'ERR_NOT_STARTED'
  readonly code = NotStartedError.code
  override name = 'NotStartedError'
}

export class RecordStoreError extends Error {
  static readonly code = 'ERR_RECORD_STORE'
  readonly code = RecordStoreError.code
  override name = 'RecordStoreError'

  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
  }
}
