/**
 * Typed errors of the store. Callers branch on `code`; README lists every code.
 * `MemfabricError` (the base of every error) lives in `common/errors.ts`; it is re-exported
 * here for the importers that found it here first.
 */
import { MemfabricError } from '../common/errors.ts'

export { MemfabricError }

export class RepoNotFoundError extends MemfabricError {
  static readonly code = 'ERR_REPO_NOT_FOUND'
  constructor (message: string) { super(message, RepoNotFoundError.code) }
}

export class RepoExistsError extends MemfabricError {
  static readonly code = 'ERR_REPO_EXISTS'
  constructor (message: string) { super(message, RepoExistsError.code) }
}

/** Another process holds the repository's lock; the message names its PID. */
export class RepoLockedError extends MemfabricError {
  static readonly code = 'ERR_REPO_LOCKED'
  constructor (message: string) { super(message, RepoLockedError.code) }
}

export class RepoCorruptError extends MemfabricError {
  static readonly code = 'ERR_REPO_CORRUPT'
  constructor (message: string, options?: ErrorOptions) { super(message, RepoCorruptError.code, options) }
}

/** A pack file ends before the byte its index names (readers retry twice: a pack may be rewritten under them). */
export class ShortPackError extends MemfabricError {
  static readonly code = 'ERR_SHORT_PACK'
  constructor (message: string) { super(message, ShortPackError.code) }
}

export class ImageFormatError extends MemfabricError {
  static readonly code = 'ERR_IMAGE_FORMAT'
  constructor (message: string) { super(message, ImageFormatError.code) }
}

export class InputFileError extends MemfabricError {
  static readonly code = 'ERR_INPUT_FILE'
  constructor (message: string, options?: ErrorOptions) { super(message, InputFileError.code, options) }
}

export class RefNotFoundError extends MemfabricError {
  static readonly code = 'ERR_REF_NOT_FOUND'
  constructor (message: string) { super(message, RefNotFoundError.code) }
}

export class InvalidRefError extends MemfabricError {
  static readonly code = 'ERR_INVALID_REF'
  constructor (message: string) { super(message, InvalidRefError.code) }
}

export class PageNotFoundError extends MemfabricError {
  static readonly code = 'ERR_PAGE_NOT_FOUND'
  constructor (message: string) { super(message, PageNotFoundError.code) }
}

export class PageVerificationError extends MemfabricError {
  static readonly code = 'ERR_PAGE_VERIFICATION'
  constructor (message: string) { super(message, PageVerificationError.code) }
}

export class BlockNotFoundError extends MemfabricError {
  static readonly code = 'ERR_BLOCK_NOT_FOUND'
  constructor (message: string) { super(message, BlockNotFoundError.code) }
}

export class StoreClosedError extends MemfabricError {
  static readonly code = 'ERR_STORE_CLOSED'
  constructor (message = 'store is closed') { super(message, StoreClosedError.code) }
}

/** The CAR file is not an image this store can take (no single root, not a manifest, incomplete). */
export class CarFormatError extends MemfabricError {
  static readonly code = 'ERR_CAR_FORMAT'
  constructor (message: string, options?: ErrorOptions) { super(message, CarFormatError.code, options) }
}

/** A block of the CAR file does not hash to its CID. */
export class CarBlockVerificationError extends MemfabricError {
  static readonly code = 'ERR_CAR_BLOCK_VERIFICATION'
  constructor (message: string) { super(message, CarBlockVerificationError.code) }
}

/** A fabric member's migration named an image that another party created (an offer only adds). */
export class NameTakenError extends MemfabricError {
  static readonly code = 'ERR_NAME_TAKEN'
  constructor (message: string) { super(message, NameTakenError.code) }
}
