/**
 * How a migration picks its sources: pure functions over what discovery found (discover.ts),
 * no network and no store. A holder ranks by tier (this site, then other sites, the source
 * last) and then by RTT; each page goes to its best holder not tried yet for it, load spread
 * among the holders of that tier, and to the source only when no other holder is left. A
 * failed round re-plans the pages it did not get around the holders dropped meanwhile.
 *
 * @example
 * ```ts
 * const at = { site: 'b', source }
 * const { assignments, unavailable } = plan(pending, candidates, toCandidate(describe(source), at), tried, dropped)
 * ```
 */
import type { CID } from 'multiformats/cid'
import type { PeerId } from '@libp2p/interface'
import { keyOf } from './cid-key.ts'
import { DEFAULT_UNKNOWN_RTT } from './constants.ts'
import type { Holder, Tier } from './index.ts'

/** Lower is nearer. `local` never plans a fetch; it ranks first for completeness. */
export const TIER_RANK: Record<Tier, number> = { local: 0, site: 1, remote: 2, source: 3 }

/** Where a pull runs: its node's site, and the peer that offers the image. */
export interface Vantage {
  site: string
  source: PeerId
}

/** A holder with what planning needs of it, computed once. */
export interface Candidate {
  readonly holder: Holder
  readonly id: string
  readonly rank: number
  readonly rtt: number
}

export interface Assignment {
  holder: Candidate
  cids: CID[]
}

export interface Plan {
  /** Per holder id, the holder and the CIDs it is asked for. */
  assignments: Map<string, Assignment>
  /** CIDs no usable holder is left for. */
  unavailable: CID[]
}

/** The tier pages from `holder` are counted in. */
export function tierOf (holder: Holder, at: Vantage): Tier {
  if (holder.peerId.equals(at.source)) return 'source'
  return holder.site === at.site ? 'site' : 'remote'
}

export function toCandidate (holder: Holder, at: Vantage): Candidate {
  return { holder, id: holder.peerId.toString(), rank: TIER_RANK[tierOf(holder, at)], rtt: holder.rttMs ?? DEFAULT_UNKNOWN_RTT }
}

/** Nearer tier first, then lower RTT. */
export function compareCandidates (a: Candidate, b: Candidate): number {
  return (a.rank - b.rank) || (a.rtt - b.rtt)
}

/** Sort each CID's candidates best first, in place. */
export function sortCandidates (candidates: Map<string, Candidate[]>): void {
  for (const list of candidates.values()) {
    if (list.length > 1) list.sort(compareCandidates)
  }
}

/**
 * Assign each pending CID to its best usable holder: among the candidates of its best tier not
 * dropped and not in `tried` for it, the one with the lowest (load + 1) x (rtt + 1), so equal
 * holders share the load; the source when no candidate is usable. `candidates` lists must be
 * sorted (sortCandidates). Records each choice in `tried`, so the next round of the same pull
 * moves on to another holder.
 */
export function plan (pending: CID[], candidates: Map<string, Candidate[]>, source: Candidate, tried: Map<string, string[]>, dropped: { has(id: string): boolean }): Plan {
  const assignments = new Map<string, Assignment>()
  const unavailable: CID[] = []
  const usable = (holder: Candidate, done: string[] | undefined): boolean =>
    !dropped.has(holder.id) && (done == null || !done.includes(holder.id))

  for (const cid of pending) {
    const key = keyOf(cid)
    const done = tried.get(key)
    let choice: Candidate | undefined
    let choiceCost = Infinity
    // the list is sorted best tier first: weigh load only among holders of the best usable tier
    for (const holder of candidates.get(key) ?? []) {
      if (!usable(holder, done)) continue
      if (choice != null && holder.rank !== choice.rank) break
      const cost = ((assignments.get(holder.id)?.cids.length ?? 0) + 1) * (holder.rtt + 1)
      if (cost < choiceCost) { choice = holder; choiceCost = cost }
    }
    if (choice == null && usable(source, done)) choice = source
    if (choice == null) {
      unavailable.push(cid)
      continue
    }
    if (done == null) tried.set(key, [choice.id])
    else done.push(choice.id)
    let assignment = assignments.get(choice.id)
    if (assignment == null) {
      assignment = { holder: choice, cids: [] }
      assignments.set(choice.id, assignment)
    }
    assignment.cids.push(cid)
  }
  return { assignments, unavailable }
}
