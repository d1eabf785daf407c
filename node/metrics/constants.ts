/** Prefix of every memfabric metric name. */
export const DEFAULT_METRICS_PREFIX = 'memfabric_'
/** Path the daemon serves metrics on (on its control API port). */
export const METRICS_PATH = '/metrics'
