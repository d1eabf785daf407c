/** Defaults of a memfabric node and daemon; the CLI reuses them. */

/** Pages announced to the DHT per provide call when new pages arrive. */
export const DEFAULT_PUBLISH_BATCH = 65_536
/** Wait this long (ms) after new pages arrive before announcing, to batch them. */
export const DEFAULT_PUBLISH_DELAY = 200
/** Folder (under the repo) where migrations offered by other peers may write memory files. */
export const DEFAULT_MIGRATION_OUT_DIR = 'out'
/** How long to wait for a peer given by id to be found and dialled (ms). */
export const DEFAULT_DIAL_TIMEOUT = 30_000
/** Live migration: stop pre-copy rounds once a round changes at most this many pages. */
export const DEFAULT_LIVE_MIN_DIRTY_PAGES = 256
/** Live migration: most pre-copy rounds before the final one. */
export const DEFAULT_LIVE_MAX_ROUNDS = 8
/**
 * Bytes of partial (still arriving or abandoned) images one fabric member may have on this
 * host at once, summed over their sizes. A migration that would pass it is refused
 * (`ERR_PEER_QUOTA`) before its pages are fetched.
 */
export const DEFAULT_PEER_PARTIAL_QUOTA = 16 * 1024 ** 3
