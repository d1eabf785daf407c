/**
 * WAN emulation for the local multi-site testnet: latency and bandwidth shaped in user space,
 * per direction, shared by all connections between two sites, bytes counted by the emulator.
 *
 * @example
 * ```ts
 * const wan = await WanEmulator.create({ sites: [{ id: 1, name: 'A' }, { id: 2, name: 'B' }], wanRttMs: 40, wanMbit: 100 })
 * await wan.expose({ site: 2, host: '127.0.2.1', port: 4002 })
 * wan.dialMap(1) // { '127.0.2.1:4002': '127.0.1.254:<port>' }
 * await wan.close()
 * ```
 */
export { WanEmulator, siteHost } from './emulator.ts'
export type { WanEmulatorInit, WanSite, WanTarget, ProxyAddress, WanLinkStats } from './emulator.ts'
export { Link, LinkFlow } from './link.ts'
export type { LinkInit, LinkStats } from './link.ts'
export * from './constants.ts'
export * from './errors.ts'
