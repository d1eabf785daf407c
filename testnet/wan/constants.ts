/**
 * Defaults of the WAN emulator, in one place so the testnet CLI can reuse them.
 */

/** Round-trip time between two sites when none is given (ms). */
export const DEFAULT_WAN_RTT_MS = 40

/** WAN bandwidth per direction between two sites when none is given (Mbit/s). */
export const DEFAULT_WAN_MBIT = 100

/**
 * Bytes a link may hold waiting for serialization (the "router queue") before every sender on
 * it is paused. Small enough that a bulk transfer adds little queueing delay to other flows.
 */
export const DEFAULT_LINK_QUEUE_BYTES = 256 * 1024

/**
 * Bytes one connection may have inside a link (queued + in flight + unflushed at the
 * receiver) before its sender is paused: bounds memory, and plays the part of a TCP window.
 */
export const DEFAULT_FLOW_WINDOW_BYTES = 8 * 1024 * 1024

/** Minimum gap between two delivery ticks of a link (ms): chunks due within it share one tick, never early. */
export const DEFAULT_TIMER_SLACK_MS = 1

/** Last octet of the proxy listeners' address in each site's range (127.0.<site>.254). */
export const DEFAULT_PROXY_HOST_OCTET = 254

/** Highest site id: a site owns 127.0.<id>.0/24. */
export const MAX_SITE_ID = 254
