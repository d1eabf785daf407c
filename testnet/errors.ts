/** Typed errors of the testnet (its daemons, scenarios and synthetic images). Callers branch on `code`. */
import { MemfabricError } from '../common/errors.ts'

/** A testnet daemon failed to start, exited, or the nodes did not find each other in time. */
export class TestnetError extends MemfabricError {
  static readonly code = 'ERR_TESTNET'
  constructor (message: string, options?: ErrorOptions) { super(message, TestnetError.code, options) }
}

/** An unknown scenario, or a scenario image size that is not a positive whole number of pages. */
export class ScenarioError extends MemfabricError {
  static readonly code = 'ERR_SCENARIO'
  constructor (message: string, options?: ErrorOptions) { super(message, ScenarioError.code, options) }
}

/** Bad options for a synthetic image (size, seed, fractions). */
export class SyntheticOptionsError extends MemfabricError {
  static readonly code = 'ERR_SYNTHETIC_INVALID_OPTIONS'
  constructor (message: string) { super(message, SyntheticOptionsError.code) }
}
