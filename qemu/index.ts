/**
 * QEMU integration: migrate a running guest whose RAM is a shared file through the fabric.
 * Guest RAM travels as memfabric pages (each from the holder nearest the destination, verified
 * against its CID, then re-hashed as a whole before the guest resumes); the device state
 * travels through QEMU's own migration stream with `x-ignore-shared`. See docs/qemu.md.
 *
 * @example
 * ```ts
 * const report = await migrateQemu({
 *   source: await connectApi('/var/lib/memfabric'),
 *   destination: await connectApi('/mnt/dst/memfabric'),
 *   destRepo: '/mnt/dst/memfabric',
 *   sourceQmp: '/run/vm1.qmp',
 *   destQmp: '/run/vm1-in.qmp',
 *   to: '12D3KooW...'
 * })
 * report.downtimeMs
 * ```
 */
export { QmpClient } from './qmp.ts'
export type { QmpEvent, QmpConnectOptions, QmpExecuteOptions } from './qmp.ts'
export { migrateQemu, installRam, sharedRamFile } from './migrate.ts'
export type { QemuMigrationInit, QemuMigrateOptions, QemuMigrationReport, QemuMigrationPhase } from './migrate.ts'
export * from './constants.ts'
export * from './errors.ts'
