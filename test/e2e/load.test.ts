/**
 * Load on real daemons: 8 migrations into one host at once, and 32 fabric members (4 processes
 * of 8 libp2p hosts) fetching one image's pages from one daemon at once. Everything arrives
 * byte-identical and the serving daemon's peak RSS stays bounded (logged; `bench/load.ts`
 * measures the same at larger sizes and docs/bench-load.md reports it).
 */
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { HttpApiClient } from '../../node/api/http-client.ts'
import { childEnv, makeImage, ok, tempDir, writeTemp } from './cli-helpers.ts'
import { startDaemon } from '../fixtures/daemon.ts'
import type { RunningDaemon } from '../fixtures/daemon.ts'
import { waitFor } from '../fixtures/wait.ts'

const LOAD_PEERS = fileURLToPath(new URL('../fixtures/load-peers.ts', import.meta.url))
const MiB = 1024 * 1024
/** A generous ceiling for a daemon's peak RSS under this load (it is logged, not tuned for). */
const RSS_CEILING = 1024 * MiB

/** Peak resident set of a process (VmHWM), bytes. */
async function peakRss (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = /VmHWM:\s+(\d+) kB/.exec(status)
  if (kb == null) throw new Error(`no VmHWM for ${pid}`)
  return Number(kb[1]) * 1024
}

async function pair (t: ExecutionContext, dir: string, octet: number): Promise<{ a: string, b: string, da: RunningDaemon, db: RunningDaemon }> {
  const a = join(dir, 'a')
  const b = join(dir, 'b')
  await ok(t, ['init', '--repo', a, '--site', 'paris', '--listen', `/ip4/127.0.1.${octet}/tcp/0`])
  await ok(t, ['init', '--repo', b, '--site', 'berlin', '--listen', `/ip4/127.0.2.${octet}/tcp/0`, '--fabric-key', join(a, 'fabric.key')])
  const da = await startDaemon(t, a)
  const db = await startDaemon(t, b, ['--bootstrap', da.info.addresses[0]])
  await waitFor(async () => {
    const peers = await ok(t, ['peers', '--repo', a, '--json'])
    return peers.some((p: any) => p.peerId === db.info.peerId && p.connected)
  }, { timeout: 60_000 })
  return { a, b, da, db }
}

test.serial('8 concurrent migrations into one host complete byte-identical', async t => {
  const dir = await tempDir(t)
  const { a, b, da, db } = await pair(t, dir, 20)
  const api = await HttpApiClient.connect(da.info.api, { timeout: 30_000, token: da.token }) as any
  const images = []
  for (let i = 0; i < 8; i++) {
    const image = makeImage(512, 100) // 2 MiB each, distinct content
    await api.importImage(await writeTemp(dir, `vm${i}.ram`, image.bytes), { name: `vm${i}` })
    images.push(image)
  }
  const reports = await Promise.all(images.map(async (_, i) => api.migrate(`vm${i}`, db.info.peerId, { out: `vm${i}.ram` })))
  for (const [i, image] of images.entries()) {
    t.is(reports[i].pages, 513)
    t.true((await readFile(join(b, 'out', `vm${i}.ram`))).equals(image.bytes), `vm${i}`)
  }
  const listed = await ok(t, ['ls', '--repo', b, '--json'])
  t.is(listed.filter((i: any) => i.complete).length, 8)
  const rss = await peakRss(db.child.pid!)
  t.log(`destination peak RSS after 8 concurrent 2 MiB migrations: ${(rss / MiB).toFixed(0)} MiB`)
  t.true(rss < RSS_CEILING)
})

test.serial('32 peers (4 processes x 8 hosts) fetching one image from one daemon all get every page', async t => {
  const dir = await tempDir(t)
  const { a, da } = await pair(t, dir, 21)
  const image = makeImage(1024, 0) // 4 MiB, 513 distinct pages
  const file = await writeTemp(dir, 'vm.ram', image.bytes)
  await ok(t, ['import', file, '--name', 'vm', '--repo', a, '--json'])
  const before = await peakRss(da.child.pid!)

  const results = await Promise.all(Array.from({ length: 4 }, async () => {
    const child = spawn(process.execPath, [LOAD_PEERS, join(a, 'fabric.key'), da.info.addresses[0], file, '8'], {
      env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true
    })
    t.teardown(() => { try { process.kill(-child.pid!, 'SIGKILL') } catch {} })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
    const code = await new Promise<number | null>(resolve => { child.once('close', c => { resolve(c) }) })
    t.is(code, 0, `load-peers: ${stdout} ${stderr}`)
    return JSON.parse(stdout.trim().split('\n').pop() ?? '{}')
  }))
  const pages = results.reduce((n, r) => n + r.pages, 0)
  t.is(pages, 32 * image.distinctPages, 'every host received every distinct page')
  t.is(results.reduce((n, r) => n + r.mismatched + r.missing + r.failures, 0), 0)
  const rss = await peakRss(da.child.pid!)
  t.log(`serving daemon peak RSS: ${(before / MiB).toFixed(0)} MiB before, ${(rss / MiB).toFixed(0)} MiB after 32 peers fetched ${pages} pages`)
  t.true(rss < RSS_CEILING)
  // still serving
  t.is(da.child.exitCode, null)
  t.truthy(await ok(t, ['stats', '--repo', a, '--json']))
})
