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
 *   sourceQmp: '/run/vm1.qmp',
 *   to: '12D3KooW...',
 *   destQmp: '/run/vm1-in.qmp',
 *   destination: await connectApi('/srv/dst/memfabric'),
 *   destRepo: '/srv/dst/memfabric'
 * }, { live: true })
 * report.downtimeMs
 * ```
 */
export { QmpClient } from './qmp.ts'
export type { QmpEvent, QmpConnectOptions, QmpExecuteOptions } from './qmp.ts'
export { migrateQemu } from './migrate.ts'
export type { QemuMigrationInit, QemuMigrateOptions, QemuMigrationReport, QemuMigrationPhase } from './migrate.ts'
export { receiveQemu, installVerified, stagingPath, stagingName } from './receive.ts'
export type { QemuReceiveInit, QemuReceiveOptions, QemuReceiveReport, InstallVerifiedResult } from './receive.ts'
export { installRam, sharedRamFile } from './ram.ts'
export * from './constants.ts'
export * from './errors.ts'
