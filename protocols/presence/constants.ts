/**
 * Protocol id and defaults of the presence query.
 */
export const PROTOCOL_PREFIX = 'memfabric'
export const PROTOCOL_NAME = 'presence'
export const PROTOCOL_VERSION = '1.0.0'
/** `/memfabric/presence/1.0.0` */
export const PRESENCE_PROTOCOL = `/${PROTOCOL_PREFIX}/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`

/** Most CIDs per request; the client splits larger queries. */
export const DEFAULT_MAX_CIDS_PER_QUERY = 16384
/** Read cap for request frames: 16384 CID links of ~41 bytes each plus slack. */
export const DEFAULT_MAX_REQUEST_FRAME_LENGTH = 1024 * 1024
/** Read cap for response frames: a bitmap of 16384 bits plus the map around it. */
export const DEFAULT_MAX_RESPONSE_FRAME_LENGTH = 4096
/** Requests the client keeps in flight on its stream (the server answers in order). */
export const DEFAULT_WINDOW = 4
/** A stream with work outstanding that sees no frame for this long is aborted. */
export const DEFAULT_IDLE_TIMEOUT = 30_000
/**
 * Inbound presence streams the server keeps open per remote peer (over all its connections);
 * a client runs one stream per query, so a few cover concurrent migrations.
 */
export const DEFAULT_MAX_STREAMS_PER_PEER = 8
/** libp2p per-connection stream limits for this protocol. */
export const DEFAULT_MAX_INBOUND_STREAMS = 32
export const DEFAULT_MAX_OUTBOUND_STREAMS = 64
