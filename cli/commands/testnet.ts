/**
 * `memfabric testnet`: a local multi-site network of real daemons with emulated WAN links,
 * live or running one migration scenario.
 */
import { defineCommand, EXIT_ERROR, globalParams, nonEmptyOption, takePositionals, UsageError } from '../command.ts'
import type { GlobalParams, ParsedArgs } from '../command.ts'
import {
  DEFAULT_HOSTS, DEFAULT_SCENARIO_SIZE, DEFAULT_SITES, DEFAULT_TESTNET_LAN_MBIT, DEFAULT_TESTNET_WAN_MBIT,
  DEFAULT_TESTNET_WAN_RTT_MS, SCENARIO_NAMES, SITE_NAMES
} from '../../testnet/constants.ts'
import type { ScenarioName } from '../../testnet/constants.ts'

export interface TestnetParams extends GlobalParams {
  sites: number
  hosts: number
  wanRttMs: number
  wanMbit: number
  lanMbit: number
  scenario?: ScenarioName
  sizeBytes: number
  dir?: string
}

const LIVE_REFRESH_MS = 2000

async function loadTestnet (): Promise<typeof import('../../testnet/index.ts')> {
  return await import('../../testnet/index.ts')
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, m: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gib: 2 ** 30, kb: 1000, mb: 1e6, gb: 1e9 }

/** `64MiB`, `256m`, `1GiB`, `4096` → bytes. */
export function parseSize (text: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)
  const unit = m != null ? SIZE_UNITS[m[2].toLowerCase()] : undefined
  if (m == null || unit === undefined) throw new UsageError(`invalid size '${text}' for --${flag} (e.g. 64MiB)`)
  return Math.round(Number(m[1]) * unit)
}

/** `40ms`, `0.04s`, `40` (ms) → milliseconds. */
export function parseMs (text: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$/i.exec(text)
  if (m == null) throw new UsageError(`invalid duration '${text}' for --${flag} (e.g. 40ms)`)
  return Number(m[1]) * (m[2]?.toLowerCase() === 's' ? 1000 : 1)
}

function numberOption (args: ParsedArgs, flag: string, fallback: number, min: number, max: number, integer: boolean): number {
  const text = nonEmptyOption(args, flag)
  if (text === undefined) return fallback
  const n = Number(text.replace(/mbit$/i, ''))
  if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new UsageError(`invalid --${flag} '${text}' (${integer ? 'an integer' : 'a number'} within ${min}..${max})`)
  }
  return n
}

export const testnetCommand = defineCommand({
  name: 'testnet',
  description: 'run a local multi-site network of real daemons with emulated WAN links',
  usage: 'testnet [--sites N] [--hosts N] [--wan-rtt MS] [--wan-mbit N] [--scenario NAME] [--size BYTES]',
  details: 'Starts one daemon process per host (own repository, real TCP and noise); host h of site s listens on 127.0.s.h. Links between sites are shaped in user space (latency per direction, bandwidth shared by all connections) and count the bytes they carry. Without --scenario it shows a live table until Ctrl-C; with one it migrates a synthetic VM from site A to site B, prints the report and exits 0 only if the destination\'s memory file is byte-identical to the source\'s. Scenarios: family (B runs siblings from the same template), return (B holds the VM\'s older snapshot), unrelated (nothing in common).',
  options: {
    sites: { type: 'string', valueName: 'N', description: 'number of sites (A, B, ...)', defaultText: String(DEFAULT_SITES) },
    hosts: { type: 'string', valueName: 'N', description: 'hosts (daemons) per site', defaultText: String(DEFAULT_HOSTS) },
    'wan-rtt': { type: 'string', valueName: 'MS', description: 'round trip between sites (40ms, 0.1s)', defaultText: `${DEFAULT_TESTNET_WAN_RTT_MS}ms` },
    'wan-mbit': { type: 'string', valueName: 'N', description: 'bandwidth of each direction between two sites, Mbit/s', defaultText: String(DEFAULT_TESTNET_WAN_MBIT) },
    'lan-mbit': { type: 'string', valueName: 'N', description: 'bandwidth inside a site, Mbit/s (0: unshaped)', defaultText: String(DEFAULT_TESTNET_LAN_MBIT) },
    scenario: { type: 'string', valueName: 'NAME', description: `run one scenario and exit: ${SCENARIO_NAMES.join(', ')}`, defaultText: 'none: live table' },
    size: { type: 'string', valueName: 'BYTES', description: 'image size of the scenario (64MiB, 1GiB)', defaultText: `${DEFAULT_SCENARIO_SIZE / 2 ** 20}MiB` },
    dir: { type: 'string', valueName: 'DIR', description: 'working directory, kept afterwards (repos, images, dial maps)', defaultText: 'a temp dir, removed' }
  },
  examples: [
    { command: 'memfabric testnet --scenario family', description: 'the main job: a sibling VM migrates to a site that runs its family; about a minute' },
    { command: 'memfabric testnet --sites 3 --hosts 2', description: 'a live network; Ctrl-C stops it' },
    { command: 'memfabric testnet --scenario return --size 256MiB --wan-mbit 50 --json' }
  ],
  handlerInit (args, env): TestnetParams {
    takePositionals(args, [])
    const scenario = nonEmptyOption(args, 'scenario')
    if (scenario !== undefined && !(SCENARIO_NAMES as readonly string[]).includes(scenario)) {
      throw new UsageError(`unknown scenario '${scenario}' (one of ${SCENARIO_NAMES.join(', ')})`)
    }
    const sizeText = nonEmptyOption(args, 'size')
    const sizeBytes = sizeText === undefined ? DEFAULT_SCENARIO_SIZE : parseSize(sizeText, 'size')
    if (sizeBytes <= 0 || sizeBytes % 4096 !== 0) throw new UsageError(`--size must be a positive multiple of 4 KiB, got ${sizeBytes}`)
    const rtt = nonEmptyOption(args, 'wan-rtt')
    const params: TestnetParams = {
      ...globalParams(args, env),
      sites: numberOption(args, 'sites', DEFAULT_SITES, 1, SITE_NAMES.length, true),
      hosts: numberOption(args, 'hosts', DEFAULT_HOSTS, 1, 253, true),
      wanRttMs: rtt === undefined ? DEFAULT_TESTNET_WAN_RTT_MS : parseMs(rtt, 'wan-rtt'),
      wanMbit: numberOption(args, 'wan-mbit', DEFAULT_TESTNET_WAN_MBIT, 0.001, 1e6, false),
      lanMbit: numberOption(args, 'lan-mbit', DEFAULT_TESTNET_LAN_MBIT, 0, 1e6, false),
      scenario: scenario as TestnetParams['scenario'],
      sizeBytes,
      dir: nonEmptyOption(args, 'dir')
    }
    if (params.scenario !== undefined && params.sites < 2) throw new UsageError('a scenario needs --sites 2 or more')
    return params
  },
  async handler (params, ctx) {
    const { Testnet, prepareScenario, runScenario, formatScenarioReport, formatNodeTable, formatLinkTable, connectedPeers } = await loadTestnet()
    const status = (text: string): void => { if (!params.json) ctx.stderr.write(`testnet: ${text}\n`) }
    const { join } = await import('node:path')
    status(`starting ${params.sites} sites × ${params.hosts} hosts, WAN ${params.wanRttMs} ms RTT, ${params.wanMbit} Mbit/s`)
    let plan: Awaited<ReturnType<typeof prepareScenario>> | undefined
    const net = await Testnet.create({
      sites: params.sites,
      hosts: params.hosts,
      wanRttMs: params.wanRttMs,
      wanMbit: params.wanMbit,
      lanMbit: params.lanMbit,
      dir: params.dir,
      signal: ctx.signal
    })
    // the runner exits on a second Ctrl-C: the network's exit hook kills the daemons then
    try {
      if (params.scenario !== undefined) {
        status(`generating ${params.scenario} images (${params.sizeBytes / 2 ** 20} MiB each, synthetic)`)
        plan = await prepareScenario(params.scenario, join(net.dir, 'images'), params.sizeBytes, params.hosts)
        const result = await runScenario(net, plan, { signal: ctx.signal, onStatus: status })
        if (params.json) {
          const { report, ...rest } = result
          ctx.printJson({ ...rest, sites: params.sites, hosts: params.hosts, wanRttMs: params.wanRttMs, wanMbit: params.wanMbit, lanMbit: params.lanMbit, report })
        } else {
          ctx.print(formatScenarioReport(result, params.wanMbit))
        }
        return result.identical ? 0 : EXIT_ERROR
      }
      // live
      if (params.json) {
        ctx.printJson({
          dir: net.dir,
          nodes: net.nodes.map(n => ({ name: n.name, site: n.site, peerId: n.peerId, multiaddr: n.multiaddr, api: n.apiUrl, repo: n.repo, pid: n.pid }))
        })
      }
      const tty = ctx.stdout.isTTY === true
      let last = ''
      while (!ctx.signal.aborted) {
        const rows = await Promise.all(net.nodes.map(async n => {
          const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(3000)])
          const [peers, stats, images] = await Promise.all([
            n.api.peers({ signal }).then(p => `${connectedPeers(p)}/${net.nodes.length - 1}`, () => '?'),
            n.api.stats({ signal }).then(s => s.distinctPages, () => undefined),
            n.api.list({ signal }).then(l => l.length, () => undefined)
          ])
          return { name: n.name, site: n.site, peerId: n.peerId, peers, pages: stats, images, api: n.apiUrl }
        }))
        if (ctx.signal.aborted) break
        const nodes = formatNodeTable(rows)
        const table = `${nodes}\n\n${formatLinkTable(net.linkStats())}`
        if (!params.json && (tty || nodes !== last)) {
          // a terminal gets the tables redrawn in place; a pipe gets them when a node changes
          ctx.stdout.write(tty ? `\x1b[H\x1b[2J${table}\n\nworking dir ${net.dir}\nCtrl-C stops the network\n` : `${table}\n\n`)
          last = nodes
        }
        await new Promise<void>(resolve => {
          const timer = setTimeout(done, LIVE_REFRESH_MS)
          function done (): void { clearTimeout(timer); ctx.signal.removeEventListener('abort', done); resolve() }
          ctx.signal.addEventListener('abort', done, { once: true })
        })
      }
      status('stopping')
      return 0
    } finally {
      await net.stop()
    }
  }
})
