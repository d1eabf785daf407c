/**
 * A migration's timeline: when each phase ran, how many round trips it waited for and the
 * bytes it moved in each direction, so anyone can see where a migration's wall time goes.
 *
 * Phases of the same name merge: a phase that runs in several windows (fetches from the site,
 * from the source) spans from its first start to its last end, and its counters add up. Phases
 * overlap where the pull runs them concurrently; the report lists them by start.
 *
 * @example
 * ```ts
 * const timeline = new Timeline()
 * const span = timeline.begin('fetch:source')
 * span.roundTrip()
 * span.bytes(wireIn, requestOut)
 * span.end()
 * timeline.toJSON() // [{ name: 'fetch:source', startMs: 12.1, endMs: 640.3, roundTrips: 1, bytesIn: …, bytesOut: … }]
 * ```
 */

/** Names of the phases a pull records; `fetch:<tier>` per tier. */
export type PhaseName =
  | 'manifest' | 'manifest:patch' | 'manifest:site' | 'manifest:thin' | 'manifest:fetch'
  | 'plan' | 'fetch:local' | 'fetch:site' | 'fetch:remote' | 'fetch:source'
  | 'store' | 'output' | 'pin'

export interface TimelinePhase {
  name: PhaseName
  /** Milliseconds since the migration started. */
  startMs: number
  endMs: number
  /** Request/answer exchanges with a peer this phase waited for. */
  roundTrips: number
  /** Wire bytes received (frames as read off the stream). */
  bytesIn: number
  /** Wire bytes sent (requests). */
  bytesOut: number
}

/** One running piece of a phase. */
export interface Span {
  roundTrip(count?: number): void
  bytes(received: number, sent?: number): void
  end(): void
}

export class Timeline {
  private readonly origin: number
  private readonly phases = new Map<PhaseName, TimelinePhase>()

  constructor (origin = performance.now()) {
    this.origin = origin
  }

  /** Milliseconds since the start. */
  now (): number {
    return performance.now() - this.origin
  }

  /** Phase `name`, created zero-length at now if it has not run yet. */
  private phase (name: PhaseName): TimelinePhase {
    let phase = this.phases.get(name)
    if (phase == null) {
      const at = this.now()
      phase = { name, startMs: at, endMs: at, roundTrips: 0, bytesIn: 0, bytesOut: 0 }
      this.phases.set(name, phase)
    }
    return phase
  }

  begin (name: PhaseName): Span {
    const entry = this.phase(name)
    let ended = false
    return {
      roundTrip: (count = 1) => { entry.roundTrips += count },
      bytes: (received, sent = 0) => {
        entry.bytesIn += received
        entry.bytesOut += sent
      },
      end: () => {
        if (ended) return
        ended = true
        entry.endMs = Math.max(entry.endMs, this.now())
      }
    }
  }

  /** Add counters to phase `name` (created, zero-length at now, if it has not run yet). */
  add (name: PhaseName, counts: { bytesIn?: number, bytesOut?: number, roundTrips?: number }): void {
    const phase = this.phase(name)
    phase.bytesIn += counts.bytesIn ?? 0
    phase.bytesOut += counts.bytesOut ?? 0
    phase.roundTrips += counts.roundTrips ?? 0
  }

  /** Run `fn` as a span of `name`; the span ends however `fn` ends. */
  async time<T> (name: PhaseName, fn: (span: Span) => Promise<T>): Promise<T> {
    const span = this.begin(name)
    try {
      return await fn(span)
    } finally {
      span.end()
    }
  }

  /** The phases by start, with times rounded to 0.1 ms. */
  toJSON (): TimelinePhase[] {
    return [...this.phases.values()]
      .sort((a, b) => a.startMs - b.startMs)
      .map(p => ({ ...p, startMs: round(p.startMs), endMs: round(p.endMs) }))
  }
}

function round (ms: number): number {
  return Math.round(ms * 10) / 10
}

/** The timeline as text, one phase a line, with a bar of where it ran within the whole. */
export function formatTimeline (phases: TimelinePhase[], width = 32): string {
  if (phases.length === 0) return ''
  const total = Math.max(...phases.map(p => p.endMs), 1)
  const name = Math.max(...phases.map(p => p.name.length))
  return phases.map(p => {
    const from = Math.floor(p.startMs / total * width)
    const to = Math.max(from + 1, Math.ceil(p.endMs / total * width))
    const bar = ' '.repeat(from) + '#'.repeat(to - from) + ' '.repeat(width - to)
    const rtt = p.roundTrips > 0 ? ` ${p.roundTrips} rt` : ''
    const bytes = p.bytesIn + p.bytesOut > 0 ? ` in ${mib(p.bytesIn)} out ${mib(p.bytesOut)}` : ''
    return `  ${p.name.padEnd(name)} |${bar}| ${p.startMs.toFixed(0).padStart(6)}-${p.endMs.toFixed(0).padEnd(6)} ms${rtt}${bytes}`
  }).join('\n')
}

function mib (n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`
}
