import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { pageCid } from '../../store/page.ts'
import { keyOf } from '../../node/migration/cid-key.ts'
import { DEFAULT_UNKNOWN_RTT } from '../../node/migration/constants.ts'
import { compareCandidates, plan, sortCandidates, tierOf, toCandidate } from '../../node/migration/planner.ts'
import type { Candidate, Vantage } from '../../node/migration/planner.ts'
import type { Holder } from '../../node/migration/index.ts'

async function peer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

function pages (n: number, seed = 0): CID[] {
  return Array.from({ length: n }, (_, i) => pageCid(new Uint8Array([seed, i, 1])))
}

/** Every CID in `cids` is held by all of `holders` (the list sorted as discovery returns it). */
function heldBy (cids: CID[], holders: Candidate[]): Map<string, Candidate[]> {
  const candidates = new Map(cids.map(cid => [keyOf(cid), [...holders]]))
  sortCandidates(candidates)
  return candidates
}

const none = { has: () => false }

async function setup (): Promise<{ at: Vantage, source: Candidate, holder: (site: string | undefined, rttMs?: number) => Promise<Candidate> }> {
  const at: Vantage = { site: 'b', source: await peer() }
  const source = toCandidate({ peerId: at.source, site: 'a', rttMs: 80 }, at)
  const holder = async (site: string | undefined, rttMs?: number): Promise<Candidate> => toCandidate({ peerId: await peer(), site, rttMs }, at)
  return { at, source, holder }
}

test('a holder\'s tier: the source, then its own site, else remote', async t => {
  const { at } = await setup()
  const h = async (site?: string): Promise<Holder> => ({ peerId: await peer(), site })
  t.is(tierOf({ peerId: at.source, site: 'b' }, at), 'source', 'the source stays the source even in our site')
  t.is(tierOf(await h('b'), at), 'site')
  t.is(tierOf(await h('c'), at), 'remote')
  t.is(tierOf(await h(undefined), at), 'remote', 'a peer of unknown site is not counted as ours')
})

test('candidates sort by tier first, then by RTT; an unknown RTT counts as DEFAULT_UNKNOWN_RTT', async t => {
  const { holder, source } = await setup()
  const farSite = await holder('b', 90)
  const nearRemote = await holder('c', 1)
  const nearSite = await holder('b', 5)
  const unknown = await holder('b')
  t.is(unknown.rtt, DEFAULT_UNKNOWN_RTT)
  const sorted = [source, nearRemote, unknown, farSite, nearSite].sort(compareCandidates)
  t.deepEqual(sorted.map(c => c.id), [nearSite, farSite, unknown, nearRemote, source].map(c => c.id))
})

test('each page goes to a holder of the best tier, never to a farther tier or the source', async t => {
  const { holder, source } = await setup()
  const site = await holder('b', 40)
  const remote = await holder('c', 1)
  const cids = pages(10)
  const { assignments, unavailable } = plan(cids, heldBy(cids, [remote, site]), source, new Map(), none)
  t.deepEqual(unavailable, [])
  t.deepEqual([...assignments.keys()], [site.id])
  t.is(assignments.get(site.id)?.cids.length, 10)
})

test('equal-tier holders share the load in proportion to their RTT', async t => {
  const { holder, source } = await setup()
  const a = await holder('b', 9)
  const b = await holder('b', 9)
  const slow = await holder('b', 29)
  let cids = pages(100)
  let { assignments } = plan(cids, heldBy(cids, [a, b]), source, new Map(), none)
  t.is(assignments.get(a.id)?.cids.length, 50)
  t.is(assignments.get(b.id)?.cids.length, 50)

  // cost is (load + 1) x (rtt + 1): a holder 3x slower gets about a third of the load of each fast one
  cids = pages(70, 1);
  ({ assignments } = plan(cids, heldBy(cids, [a, b, slow]), source, new Map(), none))
  t.is(assignments.get(a.id)?.cids.length, 30)
  t.is(assignments.get(b.id)?.cids.length, 30)
  t.is(assignments.get(slow.id)?.cids.length, 10)
})

test('the source serves only pages no other holder has', async t => {
  const { holder, source } = await setup()
  const site = await holder('b', 5)
  const cids = pages(4)
  const candidates = heldBy(cids.slice(0, 2), [site])
  const { assignments, unavailable } = plan(cids, candidates, source, new Map(), none)
  t.deepEqual(unavailable, [])
  t.deepEqual(assignments.get(site.id)?.cids, cids.slice(0, 2))
  t.deepEqual(assignments.get(source.id)?.cids, cids.slice(2))
})

test('dropped holders and holders tried for a page are skipped; the next tier then serves', async t => {
  const { holder, source } = await setup()
  const dropped = await holder('b', 1)
  const tried = await holder('b', 2)
  const other = await holder('b', 50)
  const remote = await holder('c', 3)
  const cids = pages(3)
  const triedFor = new Map([[keyOf(cids[0]), [tried.id]]])
  const isDropped = { has: (id: string) => id === dropped.id }

  const first = plan(cids, heldBy(cids, [dropped, tried, other, remote]), source, triedFor, isDropped)
  t.deepEqual(first.assignments.get(other.id)?.cids, [cids[0]])
  t.false(first.assignments.has(dropped.id))
  // a page not tried yet may still go to `tried`, the nearer one
  t.deepEqual(first.assignments.get(tried.id)?.cids, cids.slice(1))
  // every choice is recorded for the next round
  t.deepEqual(triedFor.get(keyOf(cids[0])), [tried.id, other.id])
  t.deepEqual(triedFor.get(keyOf(cids[1])), [tried.id])

  // the same pages re-planned after `tried` and `other` failed them: the remote tier, then the source
  const second = plan(cids, heldBy(cids, [dropped, tried, other, remote]), source, triedFor, { has: (id: string) => id === dropped.id || id === other.id })
  t.deepEqual(second.assignments.get(remote.id)?.cids, cids)
  const third = plan(cids, heldBy(cids, [dropped, tried, other, remote]), source, triedFor, { has: (id: string) => id === dropped.id || id === other.id })
  t.deepEqual(third.assignments.get(source.id)?.cids, cids)
})

test('a page is unavailable when every holder and the source are dropped or tried for it', async t => {
  const { holder, source } = await setup()
  const site = await holder('b', 5)
  const cids = pages(3)
  const candidates = heldBy(cids.slice(0, 1), [site])
  // page 0: its one holder is dropped and the source tried; page 1: only the source, tried; page 2: the source, not tried
  const tried = new Map([[keyOf(cids[0]), [source.id]], [keyOf(cids[1]), [source.id]]])
  const { assignments, unavailable } = plan(cids, candidates, source, tried, { has: (id: string) => id === site.id })
  t.deepEqual(unavailable, [cids[0], cids[1]])
  t.deepEqual([...assignments.keys()], [source.id])
  t.deepEqual(assignments.get(source.id)?.cids, [cids[2]])

  // a dropped source leaves nobody for pages no one else holds
  const dropped = plan(cids, candidates, source, new Map(), { has: (id: string) => id === source.id })
  t.deepEqual(dropped.unavailable, cids.slice(1))
  t.deepEqual(dropped.assignments.get(site.id)?.cids, [cids[0]])
})
