/** Typed errors of the control API (client and server). Callers branch on `code`. */
import { MemfabricError } from '../../common/errors.ts'

/** An error the daemon reported; `code` is the daemon-side error's code (relayed, so the class has none). */
export class RemoteError extends MemfabricError {}

/** The daemon refused the HTTP request (bad token, bad body, unknown method). */
export class ApiRequestError extends RemoteError {
  static readonly code = 'ERR_API_REQUEST'
  constructor (message: string) { super(message, ApiRequestError.code) }
}

/** The daemon closed a call without its answer (it stopped, or the connection broke). */
export class ApiTruncatedError extends RemoteError {
  static readonly code = 'ERR_API_TRUNCATED'
  constructor (message: string) { super(message, ApiTruncatedError.code) }
}

export class DaemonUnreachableError extends MemfabricError {
  static readonly code = 'ERR_DAEMON_UNREACHABLE'
  constructor (url: string, options?: ErrorOptions) {
    super(`daemon at ${url} does not answer`, DaemonUnreachableError.code, options)
  }
}

/** The control API could not listen on its address. */
export class ApiBindError extends MemfabricError {
  static readonly code = 'ERR_API_BIND'
  constructor (message: string) { super(message, ApiBindError.code) }
}

/** A network operation was asked of a repository that no daemon holds. */
export class DaemonNotRunningError extends MemfabricError {
  static readonly code = 'ERR_NO_DAEMON'
  constructor (dir: string) {
    super(`no daemon is running on repository ${dir}; start one with \`memfabric daemon\``, DaemonNotRunningError.code)
  }
}
