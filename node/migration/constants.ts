/** Defaults of a migration (pull). The CLI and daemon reuse them. */

/** Distinct missing pages planned and fetched together. */
export const DEFAULT_WINDOW_PAGES = 8192
/** Windows in flight at once (planning of one overlaps fetching of another). */
export const DEFAULT_WINDOWS_IN_FLIGHT = 2
/** Pages handed to one holder per fetch call; smaller slices spread load and fail over sooner. */
export const DEFAULT_SLICE_PAGES = 2048
/** Fetch calls in flight per holder. */
export const DEFAULT_FETCHES_PER_HOLDER = 2
/** Digest prefixes resolved against the store per call while rebuilding a manifest from its thin form. */
export const DEFAULT_RESOLVE_BATCH = 16_384
/**
 * Verified pages written to the store per batch (each batch is one durable commit). A fetch
 * holds the batch it fills and the one being written: 2 x 4 MiB per holder fetched from.
 */
export const DEFAULT_STORE_BATCH = 1024
/** RTT assumed for a holder whose RTT is not known yet (ms). */
export const DEFAULT_UNKNOWN_RTT = 250
/** Time allowed for a presence query or a provider lookup of one window (ms). */
export const DEFAULT_DISCOVERY_TIMEOUT = 20_000
/** Images of the same size compared when looking for the basis of an image being served. */
export const BASIS_CANDIDATES = 4
/** A basis must share at least this fraction of the image's non-zero slots. */
export const BASIS_MIN_SHARED = 0.5
/** How long a found basis is reused (ms). */
export const BASIS_CACHE_TTL = 10 * 60_000
