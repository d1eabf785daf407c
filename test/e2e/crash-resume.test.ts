/**
 * Crashes during a migration, with real daemons behind the test network's WAN emulator
 * (throttled so a migration takes seconds) and real `kill -9`:
 * - the destination killed mid-migration: restarted on the same repository it opens, verifies,
 *   keeps earlier images, and the same `migrate` completes fetching only what is missing;
 * - a same-site holder killed mid-migration: the destination drops it and finishes from the source;
 * - the source killed after the manifest with no other holder: the pull stops with a clear
 *   error, and completes once the source is back.
 */
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Testnet, processAlive } from '../../testnet/testnet.ts'
import type { TestnetNode } from '../../testnet/testnet.ts'
import type { MemfabricApi } from '../../node/api/index.ts'
import { BIN, childEnv, cli, makeImage, ok, tempDir, writeTemp } from './cli-helpers.ts'
import type { CliResult } from './cli-helpers.ts'
import { startDaemon } from '../fixtures/daemon.ts'
import type { RunningDaemon } from '../fixtures/daemon.ts'
import { waitFor } from '../fixtures/wait.ts'

// 10240 pages (40 MiB), half of them unique random (incompressible): 20 MiB on the wire. Larger
// than the 8 MiB the emulated link holds per connection (a holder or source killed mid-transfer
// has already sent that much) and than the destination's 2048-page store batches.
const BIG_PAGES = 10_240
const WAN_MBIT = 16

async function network (t: ExecutionContext, options: { hosts: number, mbit?: number, lanMbit?: number }): Promise<Testnet> {
  const net = await Testnet.create({ sites: 2, hosts: options.hosts, wanMbit: options.mbit ?? WAN_MBIT, wanRttMs: 10, lanMbit: options.lanMbit ?? 0, startTimeoutMs: 90_000, meshTimeoutMs: 90_000 })
  t.teardown(async () => { await net.stop() })
  return net
}

/** `kill -9` a testnet daemon (its whole process group) and wait until it is gone. */
async function kill9 (node: TestnetNode): Promise<void> {
  try { process.kill(-node.pid, 'SIGKILL') } catch { process.kill(node.pid, 'SIGKILL') }
  await waitFor(() => !processAlive(node.pid), { timeout: 30_000, message: `${node.name} did not die` })
}

/** Start a daemon again on a killed node's repository (same port, same dial map). */
async function restart (t: ExecutionContext, net: Testnet, node: TestnetNode, bootstrap: TestnetNode): Promise<RunningDaemon> {
  return startDaemon(t, node.repo, ['--dial-map', join(net.dir, `dial-map-${node.site}.json`), '--bootstrap', bootstrap.multiaddr])
}

/** Run the CLI in the background; the promise settles when it exits (killed at teardown if still running). */
function background (t: ExecutionContext, args: string[]): { result: Promise<CliResult>, exited: () => boolean } {
  const child = spawn(process.execPath, [BIN, ...args], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let stdout = ''
  let stderr = ''
  let done = false
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const result = new Promise<CliResult>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => { done = true; resolve({ code, signal, stdout, stderr }) })
  })
  return { result, exited: () => done }
}

/** Poll a node's store until it holds `atLeast` distinct pages (fails if `exited()` first). */
async function waitForPages (api: Pick<MemfabricApi, 'stats'>, atLeast: number, exited: () => boolean): Promise<number> {
  return waitFor(async () => {
    if (exited()) throw new Error('the migration ended before the crash could be injected')
    const stats = await api.stats({ signal: AbortSignal.timeout(10_000) })
    return stats.distinctPages >= atLeast ? stats.distinctPages : undefined
  }, { timeout: 120_000, interval: 50, message: `fewer than ${atLeast} pages arrived` })
}

async function connectedTo (repo: string, peerId: string): Promise<boolean> {
  const r = await cli(['peers', '--repo', repo, '--json'])
  return r.code === 0 && JSON.parse(r.stdout).some((p: any) => p.peerId === peerId && p.connected)
}

test.serial('kill -9 of the destination mid-migration: restart, verify, earlier image intact, re-run fetches only what is missing', async t => {
  const dir = await tempDir(t)
  const net = await network(t, { hosts: 1 })
  const src = net.node('A1')
  const dst = net.node('B1')

  // an earlier, complete image on the destination
  const small = makeImage(256, 0)
  const smallFile = await writeTemp(dir, 'vm0.ram', small.bytes)
  await ok(t, ['import', smallFile, '--name', 'vm0', '--repo', src.repo, '--json'])
  await ok(t, ['migrate', 'vm0', '--to', dst.peerId, '--out', 'vm0.ram', '--repo', src.repo, '--json'])
  const before = await dst.api.stats()

  // the destination stores pages in batches of 2048: several batches, so it dies part-way
  const image = makeImage(BIG_PAGES, 0)
  const file = await writeTemp(dir, 'vm1.ram', image.bytes)
  const imported = await ok(t, ['import', file, '--name', 'vm1', '--repo', src.repo, '--json'])

  const first = background(t, ['migrate', 'vm1', '--to', dst.peerId, '--out', 'vm1.ram', '--repo', src.repo, '--json'])
  const atKill = await waitForPages(dst.api, before.distinctPages + 100, first.exited)
  await kill9(dst)
  const interrupted = await first.result
  t.is(interrupted.code, 1, 'the source reports the interrupted migration')
  t.regex(interrupted.stderr, /lost the destination .* before its report/)
  t.log(`destination killed holding ${atKill - before.distinctPages} of ${image.distinctPages} pages; source said: ${interrupted.stderr.trim()}`)
  t.true(atKill - before.distinctPages < image.distinctPages, 'killed part-way')

  const back = await restart(t, net, dst, src)
  const verified = await ok(t, ['verify', '--deep', '--repo', dst.repo, '--json'])
  t.truthy(verified)
  const images = await ok(t, ['ls', '--repo', dst.repo, '--json'])
  t.true(images.some((i: any) => i.names.includes('vm0') && i.complete), 'the earlier image is still complete')
  t.false(images.some((i: any) => i.root === imported.root && i.complete), 'the interrupted image is partial')
  await ok(t, ['export', 'vm0', '--out', join(dir, 'vm0.back'), '--repo', dst.repo])
  t.true((await readFile(join(dir, 'vm0.back'))).equals(small.bytes))

  await waitFor(async () => connectedTo(src.repo, back.info.peerId), { timeout: 60_000, message: 'the source did not see the restarted destination' })
  const report = await ok(t, ['migrate', 'vm1', '--to', dst.peerId, '--out', 'vm1.ram', '--repo', src.repo, '--json'])
  t.is(report.root, imported.root)
  t.true(report.tiers.source.pages < image.distinctPages, `re-run fetched ${report.tiers.source.pages} of ${image.distinctPages} pages from the source`)
  t.true(report.tiers.local.pages > 0)
  t.true((await readFile(join(dst.repo, 'out', 'vm1.ram'))).equals(image.bytes))
  await ok(t, ['verify', '--deep', '--repo', dst.repo, '--json'])
})

test.serial('kill -9 of a same-site holder mid-migration: it is dropped and the migration completes from the source', async t => {
  const dir = await tempDir(t)
  // the site LAN throttled too, so the holder's transfer can be interrupted
  const net = await network(t, { hosts: 2, lanMbit: WAN_MBIT })
  const src = net.node('A1')
  const dst = net.node('B1')
  const holder = net.node('B2')
  const image = makeImage(BIG_PAGES, 0)
  const file = await writeTemp(dir, 'vm.ram', image.bytes)
  const imported = await ok(t, ['import', file, '--name', 'vm', '--repo', src.repo, '--json'])
  const held = await ok(t, ['import', file, '--name', 'vm', '--repo', holder.repo, '--json'])
  t.is(held.root, imported.root)

  const run = background(t, ['migrate', 'vm', '--to', dst.peerId, '--out', 'vm.ram', '--repo', src.repo, '--json'])
  await waitForPages(dst.api, 100, run.exited)
  await kill9(holder)
  const result = await run.result
  t.is(result.code, 0, result.stderr)
  const report = JSON.parse(result.stdout)
  t.true(report.tiers.site.pages > 0, 'pages came from the holder first')
  t.true(report.tiers.source.pages > 0, 'the rest was re-planned to the source')
  t.true(report.droppedHolders.some((d: any) => d.peerId === holder.peerId), 'the killed holder is reported dropped')
  t.true((await readFile(join(dst.repo, 'out', 'vm.ram'))).equals(image.bytes))
})

test.serial('the source killed after the manifest with no other holder: a clear error, then a re-run completes', async t => {
  const dir = await tempDir(t)
  const net = await network(t, { hosts: 1 })
  const src = net.node('A1')
  const dst = net.node('B1')
  const image = makeImage(BIG_PAGES, 0)
  const file = await writeTemp(dir, 'vm.ram', image.bytes)
  const imported = await ok(t, ['import', file, '--name', 'vm', '--repo', src.repo, '--json'])

  const out = join(dir, 'pulled.ram')
  const first = background(t, ['pull', imported.root, '--from', src.peerId, '--name', 'vm', '--out', out, '--repo', dst.repo, '--json'])
  await waitForPages(dst.api, 100, first.exited)
  await kill9(src)
  const failed = await first.result
  t.is(failed.code, 1)
  t.regex(failed.stderr, /held by no reachable peer/)
  t.regex(failed.stderr, /re-run the migration/)
  t.is(failed.stderr.trim().split('\n').length, 1, 'one line')

  const back = await restart(t, net, src, dst)
  await waitFor(async () => connectedTo(dst.repo, back.info.peerId), { timeout: 60_000, message: 'the destination did not see the restarted source' })
  const report = await ok(t, ['pull', imported.root, '--from', src.peerId, '--name', 'vm', '--out', out, '--repo', dst.repo, '--json'])
  t.true(report.tiers.source.pages < image.distinctPages, `re-run fetched ${report.tiers.source.pages} of ${image.distinctPages} pages`)
  t.true(report.tiers.local.pages > 0)
  t.true((await readFile(out)).equals(image.bytes))
})
