/**
 * Typed errors of the store. Callers branch on `code`; README lists every code.
 */
export class MemfabricError extends Error {
  readonly code: string

  constructor (message: string, code: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

export class RepoNotFoundError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_REPO_NOT_FOUND') }
}

export class RepoExistsError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_REPO_EXISTS') }
}

export class RepoLockedError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_REPO_LOCKED') }
}

export class RepoCorruptError extends MemfabricError {
  constructor (message: string, options?: ErrorOptions) { super(message, 'ERR_REPO_CORRUPT', options) }
}

export class ImageFormatError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_IMAGE_FORMAT') }
}

export class InputFileError extends MemfabricError {
  constructor (message: string, options?: ErrorOptions) { super(message, 'ERR_INPUT_FILE', options) }
}

export class RefNotFoundError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_REF_NOT_FOUND') }
}

export class InvalidRefError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_INVALID_REF') }
}

export class PageNotFoundError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_PAGE_NOT_FOUND') }
}

export class PageVerificationError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_PAGE_VERIFICATION') }
}

export class BlockNotFoundError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_BLOCK_NOT_FOUND') }
}

export class StoreClosedError extends MemfabricError {
  constructor (message = 'store is closed') { super(message, 'ERR_STORE_CLOSED') }
}
