/** Defaults of the QEMU integration; the CLI reuses them. */

/** Deadline for a QMP greeting and capabilities negotiation (ms). */
export const DEFAULT_QMP_CONNECT_TIMEOUT = 10_000
/** Deadline of one QMP command (ms). */
export const DEFAULT_QMP_COMMAND_TIMEOUT = 30_000
/** Longest QMP line accepted (bytes). */
export const DEFAULT_QMP_MAX_LINE = 1024 * 1024
/** How long QEMU's own migration of the device state may take (ms). */
export const DEFAULT_DEVICE_MIGRATION_TIMEOUT = 120_000
/** How often `query-migrate` / `query-status` are polled (ms). */
export const DEFAULT_POLL_INTERVAL = 20
/** Deadline for the pause hook (the daemon's pause command asking us to stop the guest) (ms). */
export const DEFAULT_PAUSE_TIMEOUT = 60_000
/** Page size used when the delivered RAM is installed into the destination's RAM file. */
export const INSTALL_PAGE_SIZE = 4096
/** Bytes read per step when installing the delivered RAM file. */
export const DEFAULT_INSTALL_CHUNK = 8 * 1024 * 1024
/** How long `receiveQemu` waits for a migration to deliver the RAM (ms). */
export const DEFAULT_RECEIVE_TIMEOUT = 60 * 60_000
/** Suffix of the file the destination daemon stages the final image in (under its `out/`). */
export const STAGING_SUFFIX = '.qemu-staging'
/** Default URI the destination listens on for the device state when both QEMUs are driven from one host. */
export const DEFAULT_INCOMING = 'tcp:127.0.0.1:0'
