export const PROTOCOL_PREFIX = 'memfabric'
export const PROTOCOL_NAME = 'blocks'
export const PROTOCOL_VERSION = '1.0.0'

/** Most CIDs in one request; the client splits larger asks. */
export const MAX_CIDS_PER_REQUEST = 64
/** Largest manifest block served or accepted. */
export const MAX_BLOCK_SIZE = 1024 * 1024
/** Read cap of one frame: a block and its framing. */
export const MAX_FRAME_SIZE = MAX_BLOCK_SIZE + 1024
/** Plain bytes of answers one compressed group frame holds at most (it then stays under MAX_FRAME_SIZE). */
export const MAX_GROUP_BYTES = 768 * 1024
/** zstd level of group frames: manifest blocks are few, WAN bytes are what count. */
export const DEFAULT_ZSTD_LEVEL = 8
/** Idle time allowed between frames (re-armed per frame). */
export const DEFAULT_TIMEOUT = 15_000
export const DEFAULT_MAX_INBOUND_STREAMS = 16
export const DEFAULT_MAX_OUTBOUND_STREAMS = 16
