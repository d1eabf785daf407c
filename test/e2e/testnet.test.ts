/**
 * The local test network end to end: real daemon processes, the WAN emulator between sites,
 * a scenario migrating a VM across it, and the live CLI mode torn down by Ctrl-C.
 */
import test from 'ava'
import { spawn } from 'node:child_process'
import { stat } from 'node:fs/promises'
import { Testnet, processAlive, prepareScenario, runScenario } from '../../testnet/index.ts'
import { BIN, childEnv, tempDir } from './cli-helpers.ts'

const MiB = 2 ** 20

/** Poll `fn` until it returns something other than undefined/false; throw at the deadline. */
async function until<T> (fn: () => T | undefined | false, timeoutMs: number, message: string): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (true) {
    const value = fn()
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(message)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

test('a 2-site testnet migrates a VM byte-identically; the emulator counts WAN bytes that match the report', async t => {
  t.timeout(180_000)
  const dir = await tempDir(t)
  const net = await Testnet.create({ sites: 2, hosts: 2, wanRttMs: 20, wanMbit: 200 })
  t.teardown(async () => { await net.stop() })
  t.is(net.nodes.length, 4)
  t.deepEqual(net.nodes.map(n => n.ip), ['127.0.1.1', '127.0.1.2', '127.0.2.1', '127.0.2.2'])
  const pids = net.pids()
  t.true(pids.every(processAlive))

  const plan = await prepareScenario('family', dir, 12 * MiB, net.hosts)
  const result = await runScenario(net, plan)
  t.true(result.identical, `destination ${result.destSha256} != source ${result.sourceSha256}`)
  t.is(result.imageBytes, 12 * MiB)
  t.is(result.from, 'A1')
  t.is(result.to, 'B2')
  // the sibling on B1 holds the template half: the site tier must serve pages
  t.true(result.tiers.site.pages > 0)
  t.true(result.tiers.source.pages > 0)
  // the emulator counts every byte between the sites (noise, yamux, DHT): at least what
  // memfabric reports received across the WAN, and not much more
  t.true(result.emulator.aToB > 0)
  t.true(result.emulator.bToA > 0)
  t.true(result.wanBytes > 0)
  t.true(result.emulator.aToB >= 0.95 * result.wanBytes, `emulator A→B ${result.emulator.aToB} < memfabric ${result.wanBytes}`)
  t.true(result.emulator.aToB <= 1.3 * result.wanBytes + 512 * 1024, `emulator A→B ${result.emulator.aToB} >> memfabric ${result.wanBytes}`)
  // the WAN carried far less than the image, and no less than the floor's pages compressed
  t.true(result.emulator.aToB < result.imageBytes / 2)
  t.true(result.wanBytes >= result.floor.zstdBytes * 0.9)

  await net.stop()
  await net.stop() // idempotent
  await until(() => pids.every(pid => !processAlive(pid)), 10_000, 'daemons still running after stop()')
  await t.throwsAsync(stat(net.dir))
})

test('live mode starts a network, prints its nodes, and Ctrl-C tears every process down', async t => {
  t.timeout(120_000)
  const child = spawn(process.execPath, [BIN, 'testnet', '--sites', '2', '--hosts', '1', '--lan-mbit', '0', '--json'], {
    env: childEnv(), stdio: ['ignore', 'pipe', 'pipe']
  })
  const exited = new Promise<number | null>(resolve => { child.once('exit', code => { resolve(code) }) })
  let pids: number[] = []
  t.teardown(() => {
    // only when the test failed half-way: never leave the network behind
    if (child.exitCode == null) child.kill('SIGKILL')
    for (const pid of pids) { try { process.kill(-pid, 'SIGKILL') } catch {} }
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const info = await until(() => {
    if (child.exitCode != null) throw new Error(`testnet exited ${child.exitCode}: ${stderr}`)
    try { return JSON.parse(stdout) } catch { return undefined }
  }, 90_000, 'no node list from testnet')
  t.is(info.nodes.length, 2)
  t.deepEqual(info.nodes.map((n: any) => n.name), ['A1', 'B1'])
  pids = info.nodes.map((n: any) => n.pid)
  t.true(pids.every(processAlive))
  t.true(info.nodes.every((n: any) => typeof n.api === 'string' && n.api.startsWith('http://127.0.0.1:')))

  child.kill('SIGINT')
  t.is(await exited, 0, stderr)
  await until(() => pids.every(pid => !processAlive(pid)), 10_000, 'daemons outlived the testnet')
  await t.throwsAsync(stat(info.dir), undefined, 'working dir removed')
})
