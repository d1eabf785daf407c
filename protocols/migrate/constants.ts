export const PROTOCOL_PREFIX = 'memfabric'
export const PROTOCOL_NAME = 'migrate'
export const PROTOCOL_VERSION = '1.0.0'

/** Largest frame: an offer, a progress update or a report. */
export const MAX_FRAME_SIZE = 256 * 1024
/** The destination sends progress at most this often (ms); it doubles as a heartbeat. */
export const DEFAULT_PROGRESS_INTERVAL = 500
/** The source gives up when no frame arrives for this long (ms). */
export const DEFAULT_IDLE_TIMEOUT = 60_000
/** Longest image name accepted in an offer. */
export const MAX_NAME_LENGTH = 256
export const DEFAULT_MAX_INBOUND_STREAMS = 8
