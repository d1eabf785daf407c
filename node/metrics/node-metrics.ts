import { logger } from '@libp2p/logger'
import { Counter, Gauge, Registry } from 'prom-client'
import { peerIdFromString } from '@libp2p/peer-id'
import type http from 'node:http'
import type { PeerId } from '@libp2p/interface'
import { TIERS } from '../migration/index.ts'
import type { Holder, Tier, TierFigures } from '../migration/index.ts'
import type { Store } from '../../store/index.ts'
import type { PageCounters } from '../../protocols/pages/index.ts'
import type { PresenceCounters } from '../../protocols/presence/index.ts'
import type { ProviderStats } from '../../protocols/providers/index.ts'
import { DEFAULT_MIGRATION_HISTORY } from '../migrations.ts'
import type { MigrationEntry, MigrationRegistry } from '../migrations.ts'
import { DEFAULT_METRICS_PREFIX } from './constants.ts'

const log = logger('memfabric:metrics')

/** What the metrics read from a node: narrow, so tests can feed any node. */
export interface MetricsNode {
  readonly site: string
  readonly repo: { readonly store: Store }
  readonly migrations: MigrationRegistry
  readonly libp2p: {
    readonly services: {
      pages: { readonly counters: PageCounters }
      presence: { readonly counters: PresenceCounters }
      providers: { readonly stats: ProviderStats }
    }
  }
  peers(): Holder[]
  describe(peer: PeerId): Holder
}

export interface NodeMetricsInit {
  /** Registry to register on (default: a new one; libp2p's metrics go on the same one). */
  registry?: Registry
  /** Metric name prefix (default DEFAULT_METRICS_PREFIX). */
  prefix?: string
}

type TierKey = Tier
const TIER_LABEL: Record<TierKey, string> = { local: 'local', site: 'site', remote: 'other_site', source: 'source' }

/** memfabric's metrics on a prom-client registry, and an HTTP handler to scrape them. */
export class NodeMetrics {
  readonly registry: Registry
  private readonly node: MetricsNode
  private readonly seen = new Map<number, { tiers: Record<Tier, TierFigures>, wan: number }>()
  private readonly ended = new Set<number>()
  private readonly fetchedPages: Counter<'tier'>
  private readonly fetchedBytes: Counter<'tier'>
  private readonly fetchedWire: Counter<'tier'>
  private readonly wanBytes: Counter
  private readonly migrationsEnded: Counter<'direction' | 'result'>
  private readonly onChange: (evt: Event) => void

  constructor (node: MetricsNode, init: NodeMetricsInit = {}) {
    this.node = node
    this.registry = init.registry ?? new Registry()
    const p = init.prefix ?? DEFAULT_METRICS_PREFIX
    const registers = [this.registry]
    const store = node.repo.store
    const services = node.libp2p.services

    // store figures, read once per scrape
    let statsAt = 0
    let statsCache: Promise<Awaited<ReturnType<Store['stats']>>> | undefined
    const stats = async (): Promise<Awaited<ReturnType<Store['stats']>>> => {
      if (statsCache == null || Date.now() - statsAt > 500) {
        statsAt = Date.now()
        statsCache = store.stats()
      }
      return statsCache
    }
    const storeGauge = (name: string, help: string, pick: (s: Awaited<ReturnType<Store['stats']>>) => number): void => {
      new Gauge({
        name: p + name,
        help,
        registers,
        async collect () {
          try {
            this.set(pick(await stats()))
          } catch (err) {
            log.error('store stats failed - %e', err)
          }
        }
      })
    }
    storeGauge('store_images', 'Images pinned in the store', s => s.images)
    storeGauge('store_logical_bytes', 'Sum of the sizes of stored images', s => s.logicalBytes)
    storeGauge('store_stored_bytes', 'Page bytes held in pack files', s => s.storedBytes)
    storeGauge('store_pack_bytes', 'Pack file bytes on disk (live and dead)', s => s.packBytes)
    storeGauge('store_pages', 'Distinct non-zero pages stored', s => s.distinctPages)
    storeGauge('store_zero_pages', 'Zero pages referenced by stored images (never stored)', s => s.zeroPages)
    storeGauge('store_dedup_ratio', 'Logical bytes / stored bytes', s => s.dedupRatio)

    // totals kept by the protocols, mirrored into counters at scrape time
    const mirrored = (name: string, help: string, read: () => number): void => {
      new Counter({
        name: p + name,
        help,
        registers,
        collect () {
          this.reset()
          this.inc(Math.max(0, read()))
        }
      })
    }
    const providers = (): ProviderStats => services.providers.stats
    mirrored('provider_records_published_total', 'Provider record copies acknowledged by replicas', () => providers().published)
    new Gauge({ name: p + 'provider_records_pending', help: 'Provider record copies in flight', registers, collect () { this.set(providers().pending) } })
    mirrored('provider_records_refreshed_total', 'Provider records re-announced by the republish task', () => providers().refreshed)
    mirrored('provider_records_failed_total', 'Provider record copies that found no live replica', () => providers().failedReplicas)
    mirrored('provider_records_stored_total', 'Provider records stored for other peers', () => providers().stored)
    mirrored('provider_lookups_total', 'Closest-peer lookups made in the DHT', () => providers().lookups)
    mirrored('provider_cids_resolved_total', 'CIDs resolved through provider lookups', () => providers().resolved)
    mirrored('provider_keys_served_total', 'Provider keys answered for other peers', () => providers().served)

    const pages = (): PageCounters => services.pages.counters
    mirrored('pages_served_total', 'Pages served to peers', () => pages().pagesServed)
    mirrored('page_bytes_served_total', 'Page bytes served to peers (uncompressed)', () => pages().bytesServed)
    mirrored('page_wire_bytes_served_total', 'Bytes sent on the wire serving pages', () => pages().wireBytesServed)
    mirrored('pages_missing_served_total', 'Pages asked of this node that it did not hold', () => pages().missingServed)
    mirrored('page_requests_served_total', 'Page requests served', () => pages().requestsServed)
    mirrored('presence_queries_served_total', 'Presence queries answered', () => services.presence.counters.queriesServed)
    mirrored('presence_queries_sent_total', 'Presence queries sent', () => services.presence.counters.queriesSent)
    new Counter({
      name: p + 'verification_failures_total',
      help: 'Peers caught misbehaving: pages that failed verification, malformed or unasked answers',
      labelNames: ['protocol'],
      registers,
      collect () {
        this.reset()
        this.inc({ protocol: 'pages' }, pages().misbehaved)
        this.inc({ protocol: 'presence' }, services.presence.counters.misbehaved)
      }
    })
    new Counter({
      name: p + 'transfer_timeouts_total',
      help: 'Page or presence exchanges that timed out',
      labelNames: ['protocol'],
      registers,
      collect () {
        this.reset()
        this.inc({ protocol: 'pages' }, pages().timeouts)
        this.inc({ protocol: 'presence' }, services.presence.counters.timeouts)
      }
    })

    // pages fetched per tier, from migrations into this node
    this.fetchedPages = new Counter({ name: p + 'pages_fetched_total', help: 'Pages a migration into this node got, per tier (local, site, other_site, source)', labelNames: ['tier'], registers })
    this.fetchedBytes = new Counter({ name: p + 'page_bytes_fetched_total', help: 'Page bytes a migration into this node got, per tier (uncompressed)', labelNames: ['tier'], registers })
    this.fetchedWire = new Counter({ name: p + 'wire_bytes_fetched_total', help: 'Bytes received on the wire by migrations into this node, per tier', labelNames: ['tier'], registers })
    this.wanBytes = new Counter({ name: p + 'wan_bytes_total', help: 'Bytes received from peers of other sites by migrations into this node', registers })
    this.migrationsEnded = new Counter({ name: p + 'migrations_total', help: 'Migrations ended, by direction and result', labelNames: ['direction', 'result'], registers })
    for (const tier of TIERS) {
      this.fetchedPages.inc({ tier: TIER_LABEL[tier] }, 0)
      this.fetchedBytes.inc({ tier: TIER_LABEL[tier] }, 0)
      this.fetchedWire.inc({ tier: TIER_LABEL[tier] }, 0)
    }

    new Gauge({
      name: p + 'migrations_in_progress',
      help: 'Migrations running now, by direction',
      labelNames: ['direction'],
      registers,
      collect () {
        const running = node.migrations.list().filter(m => m.finished == null)
        this.set({ direction: 'in' }, running.filter(m => m.direction === 'in').length)
        this.set({ direction: 'out' }, running.filter(m => m.direction === 'out').length)
      }
    })
    new Gauge({
      name: p + 'migration_progress_ratio',
      help: 'Share of page slots done of each migration running now',
      labelNames: ['id', 'direction', 'peer', 'root', 'name'],
      registers,
      collect () {
        this.reset()
        for (const m of node.migrations.list()) {
          if (m.finished != null) continue
          this.set({ id: String(m.id), direction: m.direction, peer: m.peer, root: m.root, name: m.name ?? '' }, m.total > 0 ? m.done / m.total : 0)
        }
      }
    })
    new Gauge({
      name: p + 'peers',
      help: 'Connected peers per site',
      labelNames: ['site'],
      registers,
      collect () {
        this.reset()
        const bySite = new Map<string, number>()
        for (const peer of node.peers()) {
          const site = peer.site ?? 'unknown'
          bySite.set(site, (bySite.get(site) ?? 0) + 1)
        }
        for (const [site, n] of bySite) this.set({ site }, n)
      }
    })
    new Gauge({
      name: p + 'peer_rtt_seconds',
      help: 'Round-trip time to each connected peer, labelled by its site',
      labelNames: ['site', 'peer'],
      registers,
      collect () {
        this.reset()
        for (const peer of node.peers()) {
          if (peer.rttMs == null) continue
          this.set({ site: peer.site ?? 'unknown', peer: peer.peerId.toString() }, peer.rttMs / 1000)
        }
      }
    })
    new Gauge({ name: p + 'info', help: 'This node: its site', labelNames: ['site'], registers, collect () { this.set({ site: node.site }, 1) } })

    this.onChange = (evt) => { this.follow((evt as CustomEvent<MigrationEntry>).detail) }
    node.migrations.addEventListener('change', this.onChange)
    for (const m of node.migrations.list()) this.follow(m)
  }

  /** Serve the registry in the Prometheus text format (an ApiServer route). */
  readonly handler = async (_req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const body = await this.registry.metrics()
    res.writeHead(200, { 'content-type': this.registry.contentType, 'cache-control': 'no-store' }).end(body)
  }

  /** Stop following the node's migrations. */
  close (): void {
    this.node.migrations.removeEventListener('change', this.onChange)
  }

  private follow (m: MigrationEntry): void {
    if (m.direction === 'in') {
      const last = this.seen.get(m.id)
      let wan = last?.wan ?? 0
      for (const tier of TIERS) {
        const now = m.tiers[tier]
        const before = last?.tiers[tier]
        if (now == null) continue
        const labels = { tier: TIER_LABEL[tier] }
        this.fetchedPages.inc(labels, Math.max(0, now.pages - (before?.pages ?? 0)))
        this.fetchedBytes.inc(labels, Math.max(0, now.bytes - (before?.bytes ?? 0)))
        const wire = Math.max(0, now.wireBytes - (before?.wireBytes ?? 0))
        this.fetchedWire.inc(labels, wire)
        // WAN: other sites, and the source when it sits elsewhere
        if (tier === 'remote' || (tier === 'source' && siteOf(this.node, m.peer) !== this.node.site)) {
          this.wanBytes.inc(wire)
          wan += wire
        }
      }
      // the report's figure also counts manifest blocks: settle on it at the end
      if (m.report != null && m.report.wanBytes > wan) {
        this.wanBytes.inc(m.report.wanBytes - wan)
        wan = m.report.wanBytes
      }
      this.seen.set(m.id, { tiers: structuredClone(m.tiers), wan })
    }
    if (m.finished != null && !this.ended.has(m.id)) {
      this.ended.add(m.id)
      // the registry forgets old migrations; so can this
      if (this.ended.size > 2 * DEFAULT_MIGRATION_HISTORY) {
        for (const id of this.ended) if (this.node.migrations.get(id) == null) this.ended.delete(id)
      }
      this.migrationsEnded.inc({ direction: m.direction, result: m.report != null ? 'ok' : 'failed' })
      this.seen.delete(m.id)
    }
  }
}

function siteOf (node: MetricsNode, peer: string): string | undefined {
  try {
    return node.describe(peerIdFromString(peer)).site
  } catch {
    return undefined
  }
}
