/** Typed errors of the CLI. Callers branch on `code`. */
import { MemfabricError } from '../common/errors.ts'

/** Bad command line: printed as one line, exit code 2. */
export class UsageError extends MemfabricError {
  static readonly code = 'ERR_USAGE'
  constructor (message: string) { super(message, UsageError.code) }
}
