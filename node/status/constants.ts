/** Least time between two pushed snapshots while migrations move (ms). */
export const DEFAULT_PUSH_INTERVAL = 250
/** Snapshot push when nothing moves: peers and store figures change too (ms). */
export const DEFAULT_IDLE_PUSH_INTERVAL = 2000
