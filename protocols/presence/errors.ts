/**
 * Typed errors of the presence query: the same conditions as the page exchange, so the
 * classes are shared (callers branch on `code`).
 */
export { InvalidMessageError, PeerMisbehavedError, TransferTimeoutError, InvalidPageCidError, NotStartedError, TooManyStreamsError } from '../pages/errors.ts'
