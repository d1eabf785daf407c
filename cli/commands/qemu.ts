/**
 * `memfabric qemu migrate`: move a running QEMU guest to a destination QEMU through the fabric
 * (guest RAM as memfabric pages, device state through QEMU's own migration stream).
 */
import { resolve } from 'node:path'
import type { QemuMigrationReport, QemuReceiveReport } from '../../qemu/index.ts'
import type { Tier } from '../../node/migration/index.ts'
import { DEFAULT_LIVE_MAX_ROUNDS, DEFAULT_LIVE_MIN_DIRTY_PAGES } from '../../node/constants.ts'
import { defineCommand, globalParams, nonEmptyOption, stringOption, takePositionals, UsageError } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { formatBytes, formatCount, formatDuration, formatFields, formatPercent, formatTable } from '../output.ts'

export interface QemuMigrateParams extends GlobalParams {
  sub: 'migrate'
  qmp: string
  to: string
  destQmp?: string
  destRepo?: string
  ram?: string
  destRam?: string
  name?: string
  incoming?: string
  live: boolean
  noResume: boolean
  minDirtyPages?: number
  maxRounds?: number
}

export interface QemuReceiveParams extends GlobalParams {
  sub: 'receive'
  qmp: string
  name: string
  incoming: string
  ram?: string
  timeoutMs?: number
  noResume: boolean
}

export type QemuParams = QemuMigrateParams | QemuReceiveParams

const TIER_LABEL = { local: 'local store', site: 'same site', remote: 'other sites', source: 'source' }
// the report's order; kept here so loading this module does not load the migration code
const TIERS = Object.keys(TIER_LABEL) as Tier[]

function ms (value: number): string {
  return value < 1000 ? `${Math.round(value)} ms` : formatDuration(value / 1000)
}

/** The report as people read it. */
export function formatQemuReport (r: QemuMigrationReport): string {
  const lines = [
    `migrated guest ${r.name}${r.resumedBy === 'here' ? ', running at the destination' : r.resumedBy === 'receiver' ? ' (the receiver resumes it at the destination)' : ', paused at the destination (resume it with QMP cont)'}`,
    formatFields([
      ['RAM', `${r.ram} → ${r.destRam ?? 'the receiver\'s RAM file'}`],
      ['size', `${formatBytes(r.size)} in ${formatCount(r.pages)} pages (${formatPercent(r.zeroPages, r.pages)} zero)`],
      ['root', r.root],
      ['verified', r.verifiedRoot !== undefined ? `destination RAM file hashes to ${r.verifiedRoot}` : 'by the receiver'],
      ['downtime', r.downtimeMs !== undefined ? ms(r.downtimeMs) : '-'],
      ['  final round', ms(r.downtime.finalRoundMs)],
      ...(r.downtime.installMs !== undefined ? [['  install', `${ms(r.downtime.installMs)} (${formatCount(r.installedPages ?? 0)} pages written)`] as [string, string]] : []),
      ...(r.downtime.verifyMs !== undefined ? [['  verify', ms(r.downtime.verifyMs)] as [string, string]] : []),
      ['  device state', `${ms(r.downtime.deviceStateMs)} (${formatBytes(r.deviceStateBytes)})`],
      ['WAN bytes', `${formatBytes(r.wanBytes)} (${formatPercent(r.wanBytes, r.size)} of the RAM)`],
      ['rounds', String(r.rounds)],
      ['total time', ms(r.durationMs)]
    ]),
    '',
    formatTable([{ header: 'TIER' }, { header: 'PAGES', right: true }, { header: 'BYTES', right: true }, { header: 'ON THE WIRE', right: true }],
      TIERS.map(t => [TIER_LABEL[t], formatCount(r.tiers[t].pages), formatBytes(r.tiers[t].bytes), t === 'local' ? '-' : formatBytes(r.tiers[t].wireBytes)]))
  ]
  if (r.fabric.roundsDetail !== undefined) {
    lines.push('', formatTable([{ header: 'ROUND' }, { header: 'DIRTY PAGES', right: true }, { header: 'WAN BYTES', right: true }, { header: 'TIME', right: true }],
      r.fabric.roundsDetail.map(d => [`${d.round}${d.final ? ' (final, guest stopped)' : ''}`, formatCount(d.dirtyPages), formatBytes(d.report.wanBytes), ms(d.report.durationMs)])))
  }
  return lines.join('\n')
}

/** The receiver's report as people read it. */
export function formatReceiveReport (r: QemuReceiveReport): string {
  return [
    `received guest ${r.name}${r.resumed ? ', running here' : ', paused here (resume it with QMP cont)'}`,
    formatFields([
      ['RAM', r.ram],
      ['verified', `RAM file hashes to ${r.root}`],
      ['delivered → running', r.deliveredToResumedMs !== undefined ? ms(r.deliveredToResumedMs) : '-'],
      ['  install', `${ms(r.downtime.installMs)} (${formatCount(r.installedPages)} pages written)`],
      ['  verify', ms(r.downtime.verifyMs)],
      ['  device state', ms(r.downtime.deviceStateMs)]
    ])
  ].join('\n')
}

function positiveInt (value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value)) throw new UsageError(`option '--${flag}' needs a whole number, got '${value}'`)
  return Number(value)
}

function required (value: string | undefined, flag: string, what: string): string {
  if (value === undefined) throw new UsageError(`missing --${flag} ${what}`)
  return value
}

export const qemuCommand = defineCommand({
  name: 'qemu',
  description: 'migrate a running QEMU guest (RAM in a shared file) through the fabric (needs daemons)',
  usage: 'qemu migrate --qmp SOCKET --to PEER (--dest-qmp SOCKET --dest-repo DIR | --incoming URI) [--live] [--name NAME]\n       memfabric qemu receive --qmp SOCKET --name NAME --incoming URI',
  details: 'The guest\'s RAM must be a shared file (-object memory-backend-file,…,share=on -machine memory-backend=…); the destination QEMU runs the same command line with its own RAM file and -incoming defer. ' +
    '`qemu migrate` runs on the source host next to the source daemon (--repo). Guest RAM travels through memfabric: with --live the daemon runs pre-copy rounds while the guest runs, then this command stops the guest over QMP and the daemon ships the last changed pages. The destination node stages the image in <its repo>/out; it is written in place into the destination\'s RAM file, the destination\'s store re-hashes that file and it must equal the migrated root; then the device state goes through QEMU\'s own migration stream (x-ignore-shared) and the destination resumes. ' +
    'With --dest-qmp and --dest-repo this command does the destination\'s steps too (both visible from this host). Otherwise run `qemu receive` on the destination host first (--repo is then the destination repository) and give `qemu migrate` its --incoming URI; the receiver listens there only once the RAM is verified. If anything fails before the device state is sent, the source guest is resumed.',
  args: [{ name: 'SUBCOMMAND', description: 'migrate (source side) or receive (destination side)' }],
  options: {
    qmp: { type: 'string', valueName: 'SOCKET', description: 'this side\'s QEMU QMP unix socket' },
    ram: { type: 'string', valueName: 'FILE', description: 'this side\'s RAM file', defaultText: 'the memory-backend-file QEMU maps' },
    to: { type: 'string', valueName: 'PEER', description: 'migrate: destination node, peer id or multiaddr' },
    'dest-qmp': { type: 'string', valueName: 'SOCKET', description: 'migrate: destination QEMU\'s QMP socket, to drive it from here' },
    'dest-repo': { type: 'string', valueName: 'DIR', description: 'migrate with --dest-qmp: destination repository (its daemon re-hashes the RAM)' },
    'dest-ram': { type: 'string', valueName: 'FILE', description: 'migrate with --dest-qmp: destination RAM file', defaultText: 'the memory-backend-file QEMU maps' },
    name: { type: 'string', short: 'n', valueName: 'NAME', description: 'image name (the same on both sides)', defaultText: 'migrate: the RAM file\'s name' },
    incoming: { type: 'string', valueName: 'URI', description: 'QEMU migration URI for the device state (receive: where to listen)', defaultText: 'with --dest-qmp: tcp:127.0.0.1:0, any free port' },
    live: { type: 'boolean', description: 'migrate: pre-copy rounds while the guest runs (else stop it first)' },
    'min-dirty': { type: 'string', valueName: 'N', description: 'migrate: stop pre-copy once a round changes at most N pages', defaultText: String(DEFAULT_LIVE_MIN_DIRTY_PAGES) },
    'max-rounds': { type: 'string', valueName: 'N', description: 'migrate: most pre-copy rounds', defaultText: String(DEFAULT_LIVE_MAX_ROUNDS) },
    timeout: { type: 'string', valueName: 'SECONDS', description: 'receive: how long to wait for the migration', defaultText: '3600' },
    'no-resume': { type: 'boolean', description: 'leave the destination paused after verification (resume it with QMP cont)' }
  },
  examples: [
    { command: 'memfabric qemu migrate --live --qmp /run/vm1.qmp --to 12D3KooW... --dest-qmp /run/vm1-in.qmp --dest-repo /srv/dst/memfabric', description: 'both QEMUs reachable from this host' },
    { command: 'memfabric qemu receive --qmp /run/vm1-in.qmp --name vm1 --incoming tcp:0.0.0.0:4444 --repo /var/lib/memfabric', description: 'on the destination host, first' },
    { command: 'memfabric qemu migrate --live --qmp /run/vm1.qmp --name vm1 --to 12D3KooW... --incoming tcp:10.2.0.7:4444', description: 'then on the source host' }
  ],
  handlerInit (args, env): QemuParams {
    const [sub] = takePositionals(args, ['SUBCOMMAND'])
    const ram = nonEmptyOption(args, 'ram')
    const common = {
      ...globalParams(args, env),
      // the daemon runs in another directory: hand it absolute paths
      qmp: resolve(required(nonEmptyOption(args, 'qmp'), 'qmp', 'SOCKET')),
      ram: ram !== undefined ? resolve(ram) : undefined,
      noResume: args.values['no-resume'] === true
    }
    if (sub === 'receive') {
      for (const flag of ['to', 'dest-qmp', 'dest-repo', 'dest-ram', 'live', 'min-dirty', 'max-rounds']) {
        if (args.values[flag] !== undefined) throw new UsageError(`--${flag} is an option of 'qemu migrate'`)
      }
      const timeout = positiveInt(stringOption(args, 'timeout'), 'timeout')
      return {
        ...common,
        sub,
        name: required(nonEmptyOption(args, 'name'), 'name', 'NAME (the same the source migrates under)'),
        incoming: required(nonEmptyOption(args, 'incoming'), 'incoming', 'URI'),
        timeoutMs: timeout !== undefined ? timeout * 1000 : undefined
      }
    }
    if (sub !== 'migrate') throw new UsageError(`unknown subcommand 'qemu ${sub}' (try 'qemu migrate' or 'qemu receive')`)
    if (args.values.timeout !== undefined) throw new UsageError('--timeout is an option of \'qemu receive\'')
    const destQmp = nonEmptyOption(args, 'dest-qmp')
    const destRepo = nonEmptyOption(args, 'dest-repo')
    const destRam = nonEmptyOption(args, 'dest-ram')
    const incoming = nonEmptyOption(args, 'incoming')
    if (destQmp !== undefined && destRepo === undefined) throw new UsageError('--dest-qmp needs --dest-repo DIR (the destination repository)')
    if (destQmp === undefined && (destRepo !== undefined || destRam !== undefined)) throw new UsageError('--dest-repo and --dest-ram only apply with --dest-qmp')
    if (destQmp === undefined && incoming === undefined) throw new UsageError('give --dest-qmp SOCKET --dest-repo DIR, or the --incoming URI of a `qemu receive` on the destination')
    if (destQmp === undefined && common.noResume) throw new UsageError('--no-resume with a receiver: give it to `qemu receive`')
    return {
      ...common,
      sub,
      to: required(nonEmptyOption(args, 'to'), 'to', 'PEER'),
      destQmp: destQmp !== undefined ? resolve(destQmp) : undefined,
      destRepo: destRepo !== undefined ? resolve(destRepo) : undefined,
      destRam: destRam !== undefined ? resolve(destRam) : undefined,
      name: nonEmptyOption(args, 'name'),
      incoming,
      live: args.values.live === true,
      minDirtyPages: positiveInt(stringOption(args, 'min-dirty'), 'min-dirty'),
      maxRounds: positiveInt(stringOption(args, 'max-rounds'), 'max-rounds')
    }
  },
  async handler (params, ctx) {
    const qemu = await import('../../qemu/index.ts')
    if (params.sub === 'receive') {
      const api = await ctx.connect(params.repo)
      try {
        const report = await qemu.receiveQemu({ destination: api, destRepo: params.repo, qmp: params.qmp, name: params.name, ram: params.ram }, {
          incoming: params.incoming,
          timeout: params.timeoutMs,
          noResume: params.noResume,
          signal: ctx.signal,
          onReady: () => { ctx.stderr.write(`memfabric: waiting for the migration of ${params.name}\n`) }
        })
        if (params.json) ctx.printJson(report)
        else ctx.print(formatReceiveReport(report))
        return 0
      } finally {
        await api.close()
      }
    }
    const source = await ctx.connect(params.repo)
    const progress = ctx.progress('migrate', params.json)
    const destination = params.destRepo !== undefined ? await ctx.connect(params.destRepo).catch(async (err) => { await source.close(); throw err }) : undefined
    try {
      const report = await qemu.migrateQemu({
        source,
        sourceQmp: params.qmp,
        to: params.to,
        ram: params.ram,
        destQmp: params.destQmp,
        destination,
        destRepo: params.destRepo,
        destRam: params.destRam
      }, {
        name: params.name,
        live: params.live,
        incoming: params.incoming,
        noResume: params.noResume,
        minDirtyPages: params.minDirtyPages,
        maxRounds: params.maxRounds,
        signal: ctx.signal,
        onProgress: u => { progress.update(u) }
      })
      progress.done()
      if (params.json) ctx.printJson(report)
      else ctx.print(formatQemuReport(report))
      return 0
    } finally {
      progress.done()
      await destination?.close()
      await source.close()
    }
  }
})
