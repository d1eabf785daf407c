/**
 * The figures of one pull: where each page slot came from (tiers), what the manifest cost,
 * deltas, WAN bytes, progress and the holders dropped. Each fact is recorded once, by the part
 * of the pull that learns it; the report and the progress events read them from here.
 */
import { TIERS } from './index.ts'
import { Timeline } from './timeline.ts'
import type { MigrationProgress, MigrationReport, Tier, TierFigures } from './index.ts'

export type Phase = MigrationProgress['phase']
export type FetchKind = 'pages' | 'manifest'

/** The report's numbers a pull's figures give. */
export type ReportFigures = Pick<MigrationReport, 'zeroPages' | 'tiers' | 'manifest' | 'delta' | 'wanBytes' | 'droppedHolders' | 'timeline'>

export class MigrationFigures {
  readonly tiers: Record<Tier, TierFigures>
  /** When each phase ran, its round trips and bytes. */
  readonly timeline: Timeline
  private readonly manifest = { blocks: 0, fetched: 0, wireBytes: 0, rebuilt: 0 }
  private readonly delta = { pages: 0, references: 0 }
  /** Slots of the image, once its manifest is read (0 before). */
  totalSlots = 0
  private wanBytes = 0
  private zeroPages = 0
  private slotsDone = 0
  /** Slots filled by pages fetched while rebuilding the manifest, before the page stage reaches them. */
  private aheadSlots = 0
  private readonly dropped = new Map<string, string>()
  private readonly onProgress?: (progress: MigrationProgress) => void

  constructor (onProgress?: (progress: MigrationProgress) => void, timeline = new Timeline()) {
    this.timeline = timeline
    this.tiers = Object.fromEntries(TIERS.map(t => [t, { pages: 0, bytes: 0, wireBytes: 0 }])) as Record<Tier, TierFigures>
    this.onProgress = onProgress
  }

  /** A page fetched from `tier` fills one slot. */
  page (tier: Tier, bytes: number): void {
    this.tiers[tier].pages++
    this.tiers[tier].bytes += bytes
    this.slotsDone++
  }

  /** The manifest has `blocks` blocks, its root included. */
  manifestBlocks (blocks: number): void {
    this.manifest.blocks = blocks
  }

  /** A manifest block was fetched. */
  block (): void {
    this.manifest.fetched++
  }

  /** `chunks` manifest chunks were rebuilt instead of fetched. */
  rebuilt (chunks: number): void {
    this.manifest.rebuilt += chunks
  }

  /** `pages` pages arrived compressed against a reference page. */
  deltaPages (pages: number): void {
    this.delta.pages += pages
  }

  /** `pages` reference pages were read for deltas. */
  referencePages (pages: number): void {
    this.delta.references += pages
  }

  /** A fetch of `kind` from `tier` took `wireBytes` on the wire. */
  wire (tier: Tier, kind: FetchKind, wireBytes: number, crossSite: boolean): void {
    if (kind === 'manifest') this.manifest.wireBytes += wireBytes
    else this.tiers[tier].wireBytes += wireBytes
    this.timeline.add(kind === 'manifest' ? 'manifest:fetch' : `fetch:${tier}`, { bytesIn: wireBytes })
    if (crossSite) this.wanBytes += wireBytes
  }

  /** The source's answer to a manifest patch or thin manifest query took `wireBytes` across sites. */
  manifestAnswer (wireBytes: number): void {
    this.manifest.wireBytes += wireBytes
    this.wanBytes += wireBytes
  }

  /** `slots` slots (`bytes` in all) are filled from the local store: held before, or repeats of a fetched page. */
  held (slots: number, bytes: number): void {
    this.tiers.local.pages += slots
    this.tiers.local.bytes += bytes
    this.slotsDone += slots
  }

  /** `slots` zero slots (no page to fetch). */
  zero (slots: number): void {
    this.zeroPages += slots
    this.slotsDone += slots
  }

  /**
   * A page fetched from `tier` while rebuilding the manifest fills `slots` slots: its first
   * counts for `tier`, the others are repeats (local). The page stage only marks them done.
   */
  ahead (tier: Tier, bytes: number, slots: number): void {
    this.tiers[tier].pages++
    this.tiers[tier].bytes += bytes
    this.tiers.local.pages += slots - 1
    this.tiers.local.bytes += (slots - 1) * bytes
    this.aheadSlots += slots
  }

  /** The page stage reached `slots` slots whose figures {@link ahead} recorded. */
  reached (slots: number): void {
    this.slotsDone += slots
  }

  drop (peerId: string, reason: string): void {
    this.dropped.set(peerId, reason)
  }

  isDropped (peerId: string): boolean {
    return this.dropped.has(peerId)
  }

  /** Why `peerId` was dropped, if it was. */
  whyDropped (peerId: string): string | undefined {
    return this.dropped.get(peerId)
  }

  progress (phase: Phase): void {
    this.onProgress?.({
      phase,
      // pages fetched while rebuilding the manifest are done before the page stage reaches them
      done: phase === 'done' ? this.totalSlots : Math.min(Math.max(this.slotsDone, this.aheadSlots), this.totalSlots),
      total: this.totalSlots,
      tiers: this.tiers
    })
  }

  report (): ReportFigures {
    return {
      zeroPages: this.zeroPages,
      tiers: this.tiers,
      manifest: this.manifest,
      delta: this.delta,
      wanBytes: this.wanBytes,
      droppedHolders: [...this.dropped].map(([peerId, reason]) => ({ peerId, reason })),
      timeline: this.timeline.toJSON()
    }
  }
}
