/**
 * Prometheus metrics of a memfabric node: libp2p's own (through `@libp2p/prometheus-metrics`
 * on the same registry) plus the fabric's — store figures, provider records, pages served and
 * fetched per tier, WAN bytes, verification failures, peers per site with RTT, migrations.
 * Values are read from the node when Prometheus scrapes, so nothing runs between scrapes
 * except the per-tier counters, which follow the node's migration registry.
 *
 * @example
 * ```ts
 * const registry = new Registry()
 * const node = await MemfabricNode.create({ repo, libp2pMetrics: prometheusMetrics({ registry }) })
 * const metrics = new NodeMetrics(node, { registry })
 * api.route('/metrics', metrics.handler)
 * ```
 */
export { NodeMetrics } from './node-metrics.ts'
export type { MetricsNode, NodeMetricsInit } from './node-metrics.ts'
export * from './constants.ts'
