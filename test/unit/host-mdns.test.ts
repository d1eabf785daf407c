/**
 * LAN discovery by mDNS between real nodes: no bootstrap address is given, peers find each
 * other by multicast and connect; the fabric key and `--allow-peer` still apply to them.
 *
 * Each test run uses its own UDP port and service tag, so it neither disturbs nor hears
 * anything else on the host (a system mDNS responder, other test runs).
 */
import test from 'ava'
import { createSocket } from 'node:dgram'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Repo } from '../../store/repo.ts'
import { MemfabricNode } from '../../node/node.ts'
import { createFabricKey } from '../../node/fabric-key.ts'
import { mdnsFits } from '../../node/discovery.ts'
import type { MdnsOptions } from '../../node/discovery.ts'
import { randomPages } from '../fixtures/memory-page-store.ts'
import { waitFor } from '../fixtures/wait.ts'

const GROUP = '224.0.0.251'

/**
 * Whether a multicast datagram sent here comes back to a member socket here (multicast
 * loopback through some multicast-capable interface). Without it mDNS cannot work on this
 * machine, and the tests below say so instead of failing.
 */
async function multicastLoops (port: number): Promise<boolean> {
  const socket = createSocket({ type: 'udp4', reuseAddr: true })
  try {
    return await new Promise<boolean>(resolve => {
      const token = randomBytes(8)
      const timer = setTimeout(() => { resolve(false) }, 2000)
      socket.on('error', () => { clearTimeout(timer); resolve(false) })
      socket.on('message', msg => { if (msg.equals(token)) { clearTimeout(timer); resolve(true) } })
      socket.bind(port, () => {
        try {
          socket.addMembership(GROUP)
          socket.setMulticastLoopback(true)
          socket.send(token, port, GROUP)
        } catch {
          clearTimeout(timer)
          resolve(false)
        }
      })
    })
  } finally {
    socket.close()
  }
}

const port = 20_000 + Math.floor(Math.random() * 40_000)
const mdns: MdnsOptions = { port, serviceTag: `_mf${randomBytes(4).toString('hex')}._udp.local`, interval: 250, redialDelay: 250 }
const available = await multicastLoops(port)
const lan = available ? test : test.skip
if (!available) console.warn(`host-mdns: multicast to ${GROUP} does not loop back on this machine (no multicast-capable interface up?), mDNS tests skipped`)

async function mdnsNode (t: any, root: string, name: string, fabricKey: Uint8Array, allowPeers?: string[]): Promise<MemfabricNode> {
  const repo = await Repo.init(join(root, name), { listen: ['/ip4/127.0.0.1/tcp/0'] })
  const node = await MemfabricNode.create({ repo, bootstrap: [], mdns, fabricKey, allowPeers, publish: false })
  t.teardown(async () => { await node.stop(); await repo.close() })
  return node
}

lan('nodes with mDNS and no bootstrap find each other, connect and fill their DHT routing tables; another fabric is refused; --allow-peer still applies', async t => {
  const root = await mkdtemp(join(tmpdir(), 'memfabric-mdns-'))
  t.teardown(async () => { await rm(root, { recursive: true, force: true }) })
  const fabric = createFabricKey()
  const b = await mdnsNode(t, root, 'b', fabric)
  const stranger = await mdnsNode(t, root, 'stranger', createFabricKey())
  // a serves pages to b only; c is a fabric member that a found on the LAN but does not allow
  const a = await mdnsNode(t, root, 'a', fabric, [b.peerId.toString()])
  const c = await mdnsNode(t, root, 'c', fabric)
  const members = [a, b, c]

  const connected = (x: MemfabricNode, y: MemfabricNode): boolean => x.libp2p.getConnections(y.peerId).length > 0
  await waitFor(() => members.every(x => members.every(y => x === y || connected(x, y))), { timeout: 30_000, message: 'fabric members did not connect by mDNS' })
  await waitFor(() => members.every(x => (x.libp2p.services.dht as any).routingTable.size >= 2), { timeout: 30_000, message: 'routing tables did not fill' })

  // the stranger was discovered (it answered the queries) but no handshake completed
  await waitFor(async () => await a.libp2p.peerStore.has(stranger.peerId), { timeout: 30_000, message: 'the stranger was never discovered' })
  for (const x of members) t.false(connected(x, stranger), 'a host of another fabric must not connect')
  t.is(stranger.libp2p.getConnections().length, 0)

  const pages = randomPages(4)
  await a.repo.store.putMany(pages)
  const fetched = await b.libp2p.services.pages.fetch(a.peerId, pages.map(p => p.cid))
  t.is(fetched.missing.length, 0)
  // a resets c's page stream (ERR_PEER_NOT_ALLOWED); c sees whichever stream error comes first
  await t.throwsAsync(c.libp2p.services.pages.fetch(a.peerId, pages.map(p => p.cid)))
  t.is(a.libp2p.services.pages.peerCounters.get(c.peerId.toString())?.pagesServed ?? 0, 0)
  t.is(a.libp2p.services.pages.peerCounters.get(b.peerId.toString())?.pagesServed, pages.length)
})

test('mDNS is on by default only when a host listens beyond loopback', t => {
  t.false(mdnsFits(['/ip4/127.0.0.1/tcp/4001']))
  t.false(mdnsFits(['/ip4/127.0.1.3/tcp/0', '/ip6/::1/tcp/0']))
  t.true(mdnsFits(['/ip4/0.0.0.0/tcp/4001']))
  t.true(mdnsFits(['/ip4/127.0.0.1/tcp/4001', '/ip4/192.168.1.5/tcp/4001']))
})
