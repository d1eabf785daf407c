/**
 * Defaults of the test network, in one place: the library, the CLI and the benchmark read them
 * from here (this module loads nothing else, so `memfabric testnet --help` stays fast).
 */

/** Sites when none is given */
export const DEFAULT_SITES = 2
/** Hosts per site when none is given */
export const DEFAULT_HOSTS = 3
/** Round trip between sites, ms */
export const DEFAULT_TESTNET_WAN_RTT_MS = 40
/** Bandwidth of each direction between two sites, Mbit/s */
export const DEFAULT_TESTNET_WAN_MBIT = 100
/** Bandwidth of the LAN inside a site, Mbit/s (0: same-site traffic unshaped) */
export const DEFAULT_TESTNET_LAN_MBIT = 10_000
/** Image size of a scenario when none is given */
export const DEFAULT_SCENARIO_SIZE = 64 * 1024 * 1024
/** The scenarios, in the order help lists them */
export const SCENARIO_NAMES = ['family', 'return', 'unrelated'] as const
export type ScenarioName = typeof SCENARIO_NAMES[number]
/** Site names: A, B, C ... */
export const SITE_NAMES = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'
