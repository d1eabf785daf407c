/**
 * The local multi-site test network: real daemon processes on loopback, one address range per
 * site (127.0.<site>.<host>), WAN links between sites shaped and counted in user space, and
 * scenarios that migrate a synthetic VM between sites and measure it.
 *
 * @example
 * ```ts
 * const net = await Testnet.create({ sites: 2, hosts: 3, wanRttMs: 40, wanMbit: 100 })
 * try {
 *   const plan = await prepareScenario('family', '/tmp/images', 64 * 2 ** 20, net.hosts)
 *   const result = await runScenario(net, plan)
 *   result.identical // the destination's file equals the source's
 * } finally {
 *   await net.stop()
 * }
 * ```
 */
export * from './constants.ts'
export * from './testnet.ts'
export * from './scenarios.ts'
export * from './report.ts'
