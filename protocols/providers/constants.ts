/**
 * Defaults of the provider-records protocol. Every tunable has exactly one default, here;
 * the node and the CLI import these instead of repeating numbers.
 */

export const PROTOCOL_PREFIX = 'memfabric'
export const PROTOCOL_NAME = 'providers'
/** 2.0.0: record keys are 16 bytes (1.0.0 sent and stored the whole 32-byte digest). */
export const PROTOCOL_VERSION = '2.0.0'
/** `/memfabric/providers/2.0.0` */
export const PROTOCOL = `/${PROTOCOL_PREFIX}/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`

/** Length of a page's sha2-256 digest: the CIDs this service publishes and resolves. */
export const DIGEST_LENGTH = 32
/**
 * Length of a record key on the wire and in the record store: the first 16 bytes of the page's
 * sha2-256 digest (`recordKey` in keyspace.ts says why a prefix is enough).
 */
export const KEY_LENGTH = 16

/** How many of the closest peers (by XOR distance of kad keys) hold each record. */
export const DEFAULT_REPLICATION = 3
/** How long a provider record lives on a replica unless refreshed. */
export const DEFAULT_RECORD_TTL = 24 * 60 * 60 * 1000
/** How often the republish task re-announces everything (well inside the TTL). */
export const DEFAULT_REPUBLISH_INTERVAL = 12 * 60 * 60 * 1000
/** How often a replica deletes expired records from its store. */
export const DEFAULT_SWEEP_INTERVAL = 60 * 60 * 1000
/** Longest TTL a replica grants, whatever the publisher asks for. */
export const MAX_RECORD_TTL = 48 * 60 * 60 * 1000

/** Keys per ADD frame: 4096 × 16 B = 64 KiB, one level batch on the replica. */
export const DEFAULT_ADD_BATCH_SIZE = 4096
/** Keys per GET frame. */
export const DEFAULT_GET_BATCH_SIZE = 2048
/** Hard cap of keys per frame a server accepts. */
export const MAX_KEYS_PER_MESSAGE = 4096
/**
 * Frames in flight per stream. The server does not yield between frames it already holds
 * and buffers at most 4 MiB unread, so the window stays small.
 */
export const DEFAULT_WINDOW = 4
/** Largest frame either side reads (a GET answer with many providers is the biggest). */
export const MAX_MESSAGE_SIZE = 4 * 1024 * 1024

/** Providers a replica returns and keeps per key (the soonest to expire is dropped first: at GET, and by the sweep). */
export const DEFAULT_MAX_PROVIDERS_PER_KEY = 32
/**
 * Entries one providing peer may hold on a replica (its share of the keyspace): at ~40 bytes
 * of level data an entry, 8 Mi entries are ~320 MiB of one replica's disk. ADD keys past it
 * are not written (the answer's count says how many were); the sweep recounts live entries.
 */
export const DEFAULT_MAX_RECORDS_PER_PEER = 8 * 1024 * 1024
/** Providers returned per key in a GET answer. */
export const MAX_PROVIDERS_PER_KEY_RESPONSE = 20
/** Addresses remembered / sent per provider peer. */
export const MAX_ADDRS_PER_PEER = 16
/** Largest encoded multiaddr accepted. */
export const MAX_ADDR_LENGTH = 256
/** Largest peer id (multihash bytes) accepted; Ed25519/secp256k1 ids are 38/39 bytes. */
export const MAX_PEER_ID_LENGTH = 64

/** Idle time allowed between frames on a stream (re-armed per frame). */
export const DEFAULT_MESSAGE_TIMEOUT = 30_000
/** Time allowed to open a stream to a replica. */
export const DEFAULT_DIAL_TIMEOUT = 10_000
/** Time allowed for one closest-peers lookup of a region. */
export const DEFAULT_LOOKUP_TIMEOUT = 30_000
/** Closest-peer lookups per region repeat until no new peer shows up, at most this often. */
export const DEFAULT_LOOKUP_ROUNDS = 4
/** How long the closest peers found for a region are reused. */
export const DEFAULT_REGION_CACHE_TTL = 5 * 60 * 1000
/** Regions cached at most. */
export const MAX_CACHED_REGIONS = 4096

/** Concurrent inbound / outbound streams of this protocol per connection. */
export const DEFAULT_MAX_INBOUND_STREAMS = 32
export const DEFAULT_MAX_OUTBOUND_STREAMS = 64

/** CIDs per batch the republish task pulls from its source. */
export const DEFAULT_REPUBLISH_BATCH_SIZE = 65_536
