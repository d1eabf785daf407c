import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { Repo } from '../../store/repo.ts'
import { Daemon } from '../../node/daemon.ts'
import { createFabricKey, writeRepoFabricKey } from '../../node/fabric-key.ts'
import { MigrationRegistry } from '../../node/migrations.ts'
import { emptyTiers } from '../../node/migrations.ts'
import { writeImage } from '../../testnet/synthetic.ts'
import { waitFor } from '../fixtures/wait.ts'

const MiB = 1024 * 1024

interface Sample { name: string, labels: Record<string, string>, value: number }

/** Parse the Prometheus text format (enough of it for these tests). */
function parse (text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line)
    if (m == null) throw new Error(`unparsable metrics line: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2]
    samples.push({ name: m[1], labels, value: Number(m[3]) })
  }
  return samples
}

function value (samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value
}

/** The control API's credential (every caller needs it, /metrics included). */
function auth (d: Daemon): Record<string, string> {
  return { authorization: `Bearer ${d.apiToken}` }
}

async function scrape (url: string, headers: Record<string, string> = {}): Promise<Sample[]> {
  const res = await fetch(`${url}/metrics`, { headers })
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status}`)
  return parse(await res.text())
}

async function startDaemons (t: any, options: { metrics: boolean }): Promise<{ a: Daemon, b: Daemon, dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-metrics-'))
  const daemons: Daemon[] = []
  t.teardown(async () => {
    await Promise.allSettled(daemons.map(async d => { await d.stop() }))
    await rm(dir, { recursive: true, force: true })
  })
  const key = createFabricKey()
  for (const [name, site, ip] of [['a', 'paris', '127.0.1.21'], ['b', 'berlin', '127.0.2.21']]) {
    const repo = join(dir, name)
    await (await Repo.init(repo, { site, listen: [`/ip4/${ip}/tcp/0`] })).close()
    await writeRepoFabricKey(repo, key)
  }
  const a = await Daemon.create({ repo: join(dir, 'a'), api: '/ip4/127.0.0.1/tcp/0', metrics: options.metrics })
  daemons.push(a)
  const b = await Daemon.create({ repo: join(dir, 'b'), api: '/ip4/127.0.0.1/tcp/0', metrics: options.metrics, bootstrap: a.node.libp2p.getMultiaddrs().map(String) })
  daemons.push(b)
  return { a, b, dir }
}

test('a daemon with --metrics serves libp2p and memfabric metrics that move with imports and migrations', async t => {
  const { a, b, dir } = await startDaemons(t, { metrics: true })

  let m = await scrape(a.apiUrl, auth(a))
  t.is(value(m, 'memfabric_info', { site: 'paris' }), 1)
  t.is(value(m, 'memfabric_store_images'), 0)
  t.is(value(m, 'memfabric_pages_fetched_total', { tier: 'source' }), 0)
  t.true(m.some(s => s.name.startsWith('libp2p_')), 'libp2p metrics on the same registry')
  t.true(m.some(s => s.name.startsWith('nodejs_') || s.name.startsWith('process_')), 'process metrics')

  // peers per site, with RTT
  await waitFor(async () => {
    const mb = await scrape(b.apiUrl, auth(b))
    return value(mb, 'memfabric_peers', { site: 'paris' }) === 1 && (value(mb, 'memfabric_peer_rtt_seconds', { site: 'paris', peer: a.node.peerId.toString() }) ?? -1) >= 0
  }, { timeout: 60_000, interval: 200, message: 'b never saw a in site paris with an RTT' })

  // an import moves the store figures
  const image = join(dir, 'vm.ram')
  await writeImage(image, { sizeBytes: 8 * MiB, seed: 11 })
  const { root } = await a.repo.store.importImage(image, { name: 'vm1' })
  m = await scrape(a.apiUrl, auth(a))
  t.is(value(m, 'memfabric_store_images'), 1)
  t.is(value(m, 'memfabric_store_logical_bytes'), 8 * MiB)
  t.true((value(m, 'memfabric_store_pages') ?? 0) > 0)
  t.true((value(m, 'memfabric_store_stored_bytes') ?? 0) > 0)
  t.true((value(m, 'memfabric_store_dedup_ratio') ?? 0) > 0)
  await a.node.flushAnnouncements()
  m = await scrape(a.apiUrl, auth(a))
  t.true((value(m, 'memfabric_provider_records_published_total') ?? 0) > 0, 'records published')
  t.is(value(m, 'memfabric_provider_records_pending'), 0)
  t.true((value(m, 'memfabric_provider_lookups_total') ?? 0) > 0)

  // a migration from paris to berlin: per-tier figures, WAN bytes, served pages
  const progressSeen: number[] = []
  const onChange = (): void => {
    const running = b.node.migrations.list().find(e => e.finished == null)
    if (running != null && running.total > 0) progressSeen.push(running.done / running.total)
  }
  b.node.migrations.addEventListener('change', onChange)
  const report = await a.node.offer(b.node.peerId, { root: CID.parse(root.toString()), name: 'vm1' })
  b.node.migrations.removeEventListener('change', onChange)
  t.true(report.tiers.source.pages > 0)
  t.true(progressSeen.length > 0, 'the registry saw progress')

  const mb = await scrape(b.apiUrl, auth(b))
  t.is(value(mb, 'memfabric_pages_fetched_total', { tier: 'source' }), report.tiers.source.pages)
  t.is(value(mb, 'memfabric_page_bytes_fetched_total', { tier: 'source' }), report.tiers.source.bytes)
  t.is(value(mb, 'memfabric_wire_bytes_fetched_total', { tier: 'source' }), report.tiers.source.wireBytes)
  t.is(value(mb, 'memfabric_wan_bytes_total'), report.wanBytes)
  t.is(value(mb, 'memfabric_migrations_total', { direction: 'in', result: 'ok' }), 1)
  t.is(value(mb, 'memfabric_migrations_in_progress', { direction: 'in' }), 0)
  t.is(value(mb, 'memfabric_store_images'), 1)
  const ma = await scrape(a.apiUrl, auth(a))
  t.true((value(ma, 'memfabric_pages_served_total') ?? 0) >= report.tiers.source.pages)
  t.true((value(ma, 'memfabric_page_bytes_served_total') ?? 0) > 0)
  t.is(value(ma, 'memfabric_migrations_total', { direction: 'out', result: 'ok' }), 1)
  t.is(value(ma, 'memfabric_verification_failures_total', { protocol: 'pages' }), 0)

  // same-origin only, as the rest of the API
  const foreign = await fetch(`${a.apiUrl}/metrics`, { headers: { origin: 'http://evil.example' } })
  t.is(foreign.status, 403)
})

test('metrics are off by default; the status page and its JSON are served', async t => {
  const { a, b } = await startDaemons(t, { metrics: false })
  t.is((await fetch(`${a.apiUrl}/metrics`)).status, 404)
  const page = await fetch(`${a.apiUrl}/`)
  t.is(page.status, 200)
  t.regex(page.headers.get('content-type') ?? '', /text\/html/)
  t.regex(await page.text(), /status\.js/)
  await waitFor(async () => {
    const status = await (await fetch(`${b.apiUrl}/status.json`, { headers: auth(b) })).json() as any
    return status.node.site === 'berlin' && status.peers.some((p: any) => p.site === 'paris')
  }, { timeout: 60_000, interval: 200 })
})

test('the migration registry tracks progress, samples tiers and keeps a bounded history', t => {
  const registry = new MigrationRegistry({ history: 2, sampleInterval: 0 })
  const seen: number[] = []
  const one = registry.track({ direction: 'in', peer: 'p', root: 'r' }, p => { seen.push(p.done) })
  const tiers = emptyTiers()
  tiers.site = { pages: 2, bytes: 8192, wireBytes: 100 }
  one.onProgress({ phase: 'pages', done: 5, total: 10, tiers })
  t.deepEqual(seen, [5], 'the wrapped onProgress still runs')
  const entry = registry.list()[0]
  t.is(entry.done, 5)
  t.is(entry.samples[entry.samples.length - 1].bytes.site, 8192)
  one.end({ error: new Error('boom') })
  t.is(entry.phase, 'failed')
  t.is(entry.error, 'boom')
  for (let i = 0; i < 3; i++) registry.track({ direction: 'out', peer: 'p', root: `r${i}` }).end({ error: 'x' })
  t.true(registry.list().filter(e => e.finished != null).length <= 3)
})
