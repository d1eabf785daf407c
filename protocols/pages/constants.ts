/**
 * Protocol ids and defaults of the page exchange. Every option of `PageExchangeInit` and
 * `FetchOptions` takes its default from here; the CLI reuses these constants.
 */
import { PAGE_SIZE } from '../../store/constants.ts'

export const PROTOCOL_PREFIX = 'memfabric'
export const PROTOCOL_NAME = 'pages'
export const PROTOCOL_VERSION = '1.0.0'
/** `/memfabric/pages/1.0.0` */
export const PAGES_PROTOCOL = `/${PROTOCOL_PREFIX}/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`

/** Largest page the protocol carries (raw or compressed). */
export const MAX_PAGE_BYTES = PAGE_SIZE

/** Bytes of a digest prefix in prefix requests and thin manifests (a false match costs a fetch: pages are hashed, manifests checked against the root). */
export const PREFIX_BYTES = 8
/** Most CIDs in one request frame; the client splits larger asks. */
export const DEFAULT_MAX_CIDS_PER_REQUEST = 256
/** A page compressed against its reference is sent that way only when it takes at most this many bytes (else it travels raw, compressed with its frame). */
export const DELTA_MAX_BYTES = 1536
/** The server closes a response frame once its payload would pass this many bytes. */
export const DEFAULT_RESPONSE_FRAME_BYTES = 1024 * 1024
/** Per-page header in a response frame (kind u8 + length u32). */
export const RESPONSE_ENTRY_HEADER = 5
/** Fixed header of a response frame (type, flags, id, start, count). */
export const RESPONSE_FRAME_HEADER = 14
/** Read cap for response frames: a full frame plus one page and its headers. */
export const DEFAULT_MAX_RESPONSE_FRAME_LENGTH = DEFAULT_RESPONSE_FRAME_BYTES + RESPONSE_FRAME_HEADER + (MAX_PAGE_BYTES + RESPONSE_ENTRY_HEADER)
/** Read cap for request frames: 256 CIDs of 36 bytes with dag-cbor tags and slack. */
export const DEFAULT_MAX_REQUEST_FRAME_LENGTH = 64 * 1024

/** Requests the client keeps in flight on one stream. */
export const DEFAULT_WINDOW = 8
/** Streams one `fetch` spreads its requests over. */
export const DEFAULT_STREAMS = 1
/** Requests the server works on at once per stream; it stops reading beyond this. */
export const DEFAULT_MAX_INFLIGHT_PER_STREAM = 8
/** Inbound page streams the server keeps open per remote peer (over all its connections). */
export const DEFAULT_MAX_STREAMS_PER_PEER = 16
/** libp2p per-connection stream limits for this protocol. */
export const DEFAULT_MAX_INBOUND_STREAMS = 32
export const DEFAULT_MAX_OUTBOUND_STREAMS = 64
/** A stream with work outstanding that sees no frame for this long is aborted. */
export const DEFAULT_IDLE_TIMEOUT = 30_000
/** Verified pages are written into `options.sink` in batches of this many. */
export const DEFAULT_SINK_BATCH = 256

/**
 * zstd level of compressed response frames (asked for across sites only). Level 8 takes real
 * guest RAM 6 % below level 3 and still compresses ~57 MB/s per core here (4.5× a 100 Mbit/s
 * link). On WAN links faster than ~500 Mbit/s a lower level keeps up better.
 */
export const DEFAULT_ZSTD_LEVEL = 8
/** A compressed frame is only sent when it is at most this fraction of the plain one. */
export const ZSTD_MIN_SAVING = 0.97
