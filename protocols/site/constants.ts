export const PROTOCOL_PREFIX = 'memfabric'
export const PROTOCOL_NAME = 'site'
export const PROTOCOL_VERSION = '1.0.0'

/** Largest hello frame accepted: a site label and a few fields. */
export const MAX_MESSAGE_SIZE = 1024
/** How long a hello exchange may take. */
export const DEFAULT_TIMEOUT = 10_000
/** How often RTT estimates are refreshed from libp2p's connection monitor. */
export const DEFAULT_RTT_REFRESH_INTERVAL = 5_000
/** Longest accepted site label. */
export const MAX_SITE_LENGTH = 64
