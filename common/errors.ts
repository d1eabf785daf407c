/**
 * The error model of every layer (store, protocols, node, cli, qemu, testnet).
 *
 * One class per condition, each a `MemfabricError` with a stable `code` (also a static
 * `code` on the class, to branch on without a literal) and `name` (the class name); callers
 * branch on `code`, never on the message. Wrap a lower error with `{ cause }`.
 *
 * Each folder's `errors.ts` holds the classes of its conditions; a condition met in several
 * layers has its class here or in `protocols/errors.ts`, and the others re-export it. Every
 * code can reach a user (thrown by a public function, printed by the CLI, sent over the
 * control API, or logged for a stream reset), so README.md's "Error codes" section lists every
 * one; `test/unit/error-codes.test.ts` keeps the two in step.
 *
 * @example
 * ```ts
 * export class PageNotFoundError extends MemfabricError {
 *   static readonly code = 'ERR_PAGE_NOT_FOUND'
 *   constructor (message: string) { super(message, PageNotFoundError.code) }
 * }
 * ```
 */
export class MemfabricError extends Error {
  /**
   * The condition's code, also the class's static `code`. Only a class that relays a code
   * from the other side of a connection (`RemoteError`, `MigrationFailedError`) has no static
   * `code`: its instances take the code given.
   */
  readonly code: string

  constructor (message: string, code: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** A service (or the node) was used before `start()` finished or after `stop()`. */
export class NotStartedError extends MemfabricError {
  static readonly code = 'ERR_NOT_STARTED'
  constructor (message = 'service is not started', options?: ErrorOptions) { super(message, NotStartedError.code, options) }
}

/**
 * An error that had no code of its own (a bug, or a dependency's error): the code the
 * control API and a migration destination report for it.
 */
export class InternalError extends MemfabricError {
  static readonly code = 'ERR_INTERNAL'
  constructor (message: string, options?: ErrorOptions) { super(message, InternalError.code, options) }
}
