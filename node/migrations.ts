/**
 * The node's record of migrations in and out: what each is, how far it got, where its pages
 * came from over time. Metrics and the status page read it; the node feeds it by wrapping the
 * `onProgress` of `pull`, `offer` and accepted offers.
 *
 * @example
 * ```ts
 * node.migrations.addEventListener('change', (e) => console.log(e.detail.id, e.detail.done))
 * node.migrations.list().filter(m => m.finished == null) // in progress
 * ```
 */
import { TIERS } from './migration/index.ts'
import type { MigrationProgress, MigrationReport, Tier, TierFigures } from './migration/index.ts'

/** Finished migrations kept for the status page. */
export const DEFAULT_MIGRATION_HISTORY = 50
/** Most tier samples kept per migration (older ones are thinned out). */
export const DEFAULT_MIGRATION_SAMPLES = 240
/** Least time between two tier samples of one migration (ms). */
export const DEFAULT_SAMPLE_INTERVAL = 200

export type MigrationDirection = 'in' | 'out'

/** Bytes per tier at one moment of a migration (ms since its start). */
export interface TierSample {
  t: number
  bytes: Record<Tier, number>
}

export interface MigrationEntry {
  id: number
  direction: MigrationDirection
  /** The other end: the source of a migration in, the destination of one out. */
  peer: string
  root: string
  name?: string
  phase: MigrationProgress['phase'] | 'failed'
  done: number
  total: number
  tiers: Record<Tier, TierFigures>
  started: number
  finished?: number
  report?: MigrationReport
  error?: string
  samples: TierSample[]
}

export interface MigrationRegistryInit {
  history?: number
  samples?: number
  sampleInterval?: number
}

export interface MigrationRegistryEvents {
  change: CustomEvent<MigrationEntry>
}

export function emptyTiers (): Record<Tier, TierFigures> {
  return { local: zero(), site: zero(), remote: zero(), source: zero() }
}

function zero (): TierFigures {
  return { pages: 0, bytes: 0, wireBytes: 0 }
}

/** Migrations in and out of one node; emits `change` on every progress step. */
export class MigrationRegistry extends EventTarget {
  private readonly entries = new Map<number, MigrationEntry>()
  private readonly history: number
  private readonly maxSamples: number
  private readonly sampleInterval: number
  private nextId = 1

  constructor (init: MigrationRegistryInit = {}) {
    super()
    this.history = init.history ?? DEFAULT_MIGRATION_HISTORY
    this.maxSamples = init.samples ?? DEFAULT_MIGRATION_SAMPLES
    this.sampleInterval = init.sampleInterval ?? DEFAULT_SAMPLE_INTERVAL
  }

  /** All migrations known, oldest first. */
  list (): MigrationEntry[] {
    return [...this.entries.values()]
  }

  get (id: number): MigrationEntry | undefined {
    return this.entries.get(id)
  }

  /**
   * Track one migration: returns an `onProgress` to hand to the migration (it calls `wrapped`
   * too) and `end` to call with its report or error.
   */
  track (init: { direction: MigrationDirection, peer: string, root: string, name?: string }, wrapped?: (p: MigrationProgress) => void): {
    onProgress(p: MigrationProgress): void
    end(result: { report?: MigrationReport, error?: unknown }): void
  } {
    const entry: MigrationEntry = {
      id: this.nextId++,
      ...init,
      phase: 'manifest',
      done: 0,
      total: 0,
      tiers: emptyTiers(),
      started: Date.now(),
      samples: [{ t: 0, bytes: { local: 0, site: 0, remote: 0, source: 0 } }]
    }
    this.entries.set(entry.id, entry)
    this.prune()
    this.emit(entry)
    return {
      onProgress: (p) => {
        try {
          this.progress(entry, p)
        } finally {
          wrapped?.(p)
        }
      },
      end: ({ report, error }) => {
        entry.finished = Date.now()
        if (report != null) {
          entry.report = report
          entry.phase = 'done'
          entry.tiers = report.tiers
          entry.total = Math.max(entry.total, report.pages)
          entry.done = entry.total
          this.sample(entry, true)
        } else {
          entry.phase = 'failed'
          entry.error = error instanceof Error ? error.message : String(error)
        }
        this.emit(entry)
      }
    }
  }

  private progress (entry: MigrationEntry, p: MigrationProgress): void {
    // a live round reports its own shape; keep only what a migration progress has
    if (typeof p?.done !== 'number' || typeof p.total !== 'number') return
    entry.phase = p.phase ?? entry.phase
    entry.done = p.done
    entry.total = p.total
    if (p.tiers != null) entry.tiers = p.tiers
    this.sample(entry, false)
    this.emit(entry)
  }

  private sample (entry: MigrationEntry, force: boolean): void {
    const t = Date.now() - entry.started
    const last = entry.samples[entry.samples.length - 1]
    if (!force && last != null && t - last.t < this.sampleInterval) return
    const bytes = { local: 0, site: 0, remote: 0, source: 0 }
    for (const tier of TIERS) bytes[tier] = entry.tiers[tier]?.bytes ?? 0
    entry.samples.push({ t, bytes })
    if (entry.samples.length > this.maxSamples) {
      // keep the first and last, drop every other one in between
      entry.samples = entry.samples.filter((_, i, all) => i === 0 || i === all.length - 1 || i % 2 === 0)
    }
  }

  private prune (): void {
    const finished = this.list().filter(e => e.finished != null)
    for (let i = 0; i < finished.length - this.history; i++) this.entries.delete(finished[i].id)
  }

  private emit (entry: MigrationEntry): void {
    this.dispatchEvent(new CustomEvent('change', { detail: entry }))
  }
}
