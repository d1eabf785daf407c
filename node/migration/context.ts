import type { MigrationFigures } from './figures.ts'
import type { PullDeps, PullOptions } from './index.ts'
import type { Vantage } from './planner.ts'

/** What every stage of one pull shares: the node's dependencies, the pull's options, its figures. */
export interface PullContext {
  readonly deps: PullDeps
  readonly options: PullOptions
  readonly figures: MigrationFigures
  /** This node's site and the image's source, for tiers and ranking. */
  readonly at: Vantage
}
