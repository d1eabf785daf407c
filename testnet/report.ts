/**
 * Text for people from testnet results: the scenario report and the live node table.
 * Pure functions; the CLI decides where the text goes.
 */
import { formatBytes, formatCount, formatPercent, formatRate, formatRatio, formatTable } from '../cli/output.ts'
import { TIERS, formatTimeline } from '../node/migration/index.ts'
import type { ScenarioResult } from './scenarios.ts'
import type { WanLinkStats } from './wan/index.ts'

export interface NodeRow {
  name: string
  site: string
  peerId: string
  /** Connected peers / other nodes */
  peers: string
  /** Distinct pages held, or undefined when the node did not answer */
  pages?: number
  images?: number
  api: string
}

/** The live table: one row per node. */
export function formatNodeTable (rows: NodeRow[]): string {
  return formatTable([
    { header: 'NODE' }, { header: 'SITE' }, { header: 'PEER ID' }, { header: 'PEERS', right: true },
    { header: 'IMAGES', right: true }, { header: 'PAGES HELD', right: true }, { header: 'API' }
  ], rows.map(r => [
    r.name, r.site, shortPeerId(r.peerId), r.peers,
    r.images === undefined ? '?' : formatCount(r.images),
    r.pages === undefined ? '?' : formatCount(r.pages),
    r.api
  ]))
}

/** The emulated links: what each carried so far and the connections crossing it. */
export function formatLinkTable (links: WanLinkStats[]): string {
  return formatTable([
    { header: 'LINK' }, { header: 'RTT/2', right: true }, { header: 'MBIT/S', right: true }, { header: 'CARRIED', right: true },
    { header: 'IN FLIGHT', right: true }, { header: 'CONNS', right: true }, { header: 'ACTIVE', right: true }
  ], links.map(l => [
    l.from === l.to ? `${l.fromName} LAN` : `${l.fromName}→${l.toName}`, `${l.latencyMs} ms`, formatCount(l.mbit), formatBytes(l.bytes),
    formatBytes(l.inFlightBytes ?? 0), formatCount(l.connections), formatCount(l.activeConnections)
  ]))
}

/** `12D3KooW…abcdef` */
export function shortPeerId (id: string): string {
  return id.length > 20 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id
}

/** The report of one scenario run. */
/** The scenario's report as text; with `wanMbit`, the link time of its WAN bytes beside its wall time. */
export function formatScenarioReport (r: ScenarioResult, wanMbit?: number): string {
  const lines: string[] = []
  lines.push(`scenario ${r.scenario}: ${r.description}`)
  lines.push(`${r.from} → ${r.to}  root ${r.root}`)
  lines.push('')
  lines.push(formatTable([{ header: 'IMAGE' }, { header: '', right: true }], [
    ['size', `${formatBytes(r.imageBytes)}`],
    ['pages', formatCount(r.pages)],
    ['zero pages', `${formatCount(r.zeroPages)} (${formatPercent(r.zeroPages, r.pages)})`],
    ['distinct non-zero pages', formatCount(r.distinctPages)]
  ]))
  lines.push('')
  lines.push(formatTable([
    { header: 'TIER' }, { header: 'PAGES', right: true }, { header: 'SHARE', right: true }, { header: 'BYTES', right: true }, { header: 'ON THE WIRE', right: true }
  ], TIERS.map(t => {
    const f = r.tiers[t] ?? { pages: 0, bytes: 0, wireBytes: 0 }
    return [t, formatCount(f.pages), formatPercent(f.pages, r.pages - r.zeroPages), formatBytes(f.bytes), formatBytes(f.wireBytes)]
  })))
  lines.push('')
  const emulated = r.emulator.aToB + r.emulator.bToA
  lines.push(formatTable([{ header: 'WAN' }, { header: 'BYTES', right: true }, { header: 'OF IMAGE', right: true }, { header: 'VS FLOOR', right: true }], [
    ['memfabric report (received from other sites)', formatBytes(r.wanBytes), formatPercent(r.wanBytes, r.imageBytes), formatRatio(r.wanBytes / r.floor.totalBytes)],
    ['emulator A→B', formatBytes(r.emulator.aToB), formatPercent(r.emulator.aToB, r.imageBytes), formatRatio(r.emulator.aToB / r.floor.totalBytes)],
    ['emulator B→A', formatBytes(r.emulator.bToA), formatPercent(r.emulator.bToA, r.imageBytes), ''],
    ['emulator both ways', formatBytes(emulated), formatPercent(emulated, r.imageBytes), formatRatio(emulated / r.floor.totalBytes)],
    [`floor: ${formatCount(r.floor.pages)} pages B lacks, zstd + manifest`, formatBytes(r.floor.totalBytes), formatPercent(r.floor.totalBytes, r.imageBytes), '1.00x']
  ]))
  lines.push('')
  // the link time of what crossed the WAN, both ways, at the emulated bandwidth: the time the bytes need
  const linkMs = wanMbit != null && wanMbit > 0 ? emulated * 8 / (wanMbit * 1e3) : undefined
  lines.push(`time ${(r.durationMs / 1000).toFixed(2)} s, ${formatRate(r.throughput)} of image` +
    (linkMs != null ? `; link time of its WAN bytes ${(linkMs / 1000).toFixed(2)} s (${(r.durationMs / linkMs).toFixed(1)}x)` : ''))
  const timeline = r.report?.timeline
  if (timeline != null && timeline.length > 0) {
    lines.push('')
    lines.push('timeline of the pull at the destination (ms since it started):')
    lines.push(formatTimeline(timeline))
  }
  lines.push(r.identical
    ? `destination file is byte-identical (sha256 ${r.destSha256.slice(0, 16)}…)`
    : `DESTINATION FILE DIFFERS: source sha256 ${r.sourceSha256}, destination ${r.destSha256 === '' ? 'missing' : r.destSha256}`)
  return lines.join('\n')
}
