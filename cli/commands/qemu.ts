/**
 * `memfabric qemu migrate`: move a running QEMU guest to a destination QEMU through the fabric
 * (guest RAM as memfabric pages, device state through QEMU's own migration stream).
 */
import { resolve } from 'node:path'
import type { QemuMigrationReport } from '../../qemu/index.ts'
import { TIERS } from '../../node/migration/index.ts'
import { DEFAULT_LIVE_MAX_ROUNDS, DEFAULT_LIVE_MIN_DIRTY_PAGES } from '../../node/constants.ts'
import { defineCommand, globalParams, nonEmptyOption, stringOption, takePositionals, UsageError } from '../command.ts'
import type { GlobalParams } from '../command.ts'
import { formatBytes, formatCount, formatDuration, formatFields, formatPercent, formatTable } from '../output.ts'

export interface QemuMigrateParams extends GlobalParams {
  qmp: string
  destQmp: string
  destRepo: string
  to: string
  ram?: string
  destRam?: string
  name?: string
  incoming?: string
  live: boolean
  noResume: boolean
  minDirtyPages?: number
  maxRounds?: number
}

const TIER_LABEL = { local: 'local store', site: 'same site', remote: 'other sites', source: 'source' }

function ms (value: number): string {
  return value < 1000 ? `${Math.round(value)} ms` : formatDuration(value / 1000)
}

/** The report as people read it. */
export function formatQemuReport (r: QemuMigrationReport): string {
  const lines = [
    `migrated guest ${r.name}${r.resumed ? ', running at the destination' : ', paused at the destination (resume it with QMP cont)'}`,
    formatFields([
      ['RAM', `${r.ram} → ${r.destRam}`],
      ['size', `${formatBytes(r.size)} in ${formatCount(r.pages)} pages (${formatPercent(r.zeroPages, r.pages)} zero)`],
      ['root', r.root],
      ['verified', `destination RAM file hashes to ${r.verifiedRoot}`],
      ['downtime', r.downtimeMs !== undefined ? ms(r.downtimeMs) : '-'],
      ['  final round', ms(r.downtime.finalRoundMs)],
      ['  install', `${ms(r.downtime.installMs)} (${formatCount(r.installedPages)} pages written)`],
      ['  verify', ms(r.downtime.verifyMs)],
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
  description: 'migrate a running QEMU guest (RAM in a shared file) through the fabric (needs a daemon)',
  usage: 'qemu migrate --qmp SOCKET --to PEER --dest-qmp SOCKET --dest-repo DIR [--ram FILE] [--dest-ram FILE] [--live] [--name NAME]',
  details: 'Run on the source host, next to the source daemon (--repo). The guest\'s RAM must be a shared file (-object memory-backend-file,…,share=on -machine memory-backend=…); the destination QEMU runs the same command line with its own RAM file and -incoming defer. ' +
    'Guest RAM travels through memfabric: with --live the daemon runs pre-copy rounds while the guest runs, then stops it over QMP and ships the last changed pages. The destination node stages the image in <dest-repo>/out, this command writes it in place into the destination\'s RAM file, the destination\'s store re-hashes that file and it must equal the migrated root, then the device state goes through QEMU\'s own migration stream (x-ignore-shared) and the destination resumes. ' +
    'Needs the destination\'s QMP socket and repository directory on this host (same host, or forwarded/mounted: see docs/qemu.md). If anything fails after the guest stopped, the source guest is resumed.',
  args: [{ name: 'migrate', description: 'the subcommand' }],
  options: {
    qmp: { type: 'string', valueName: 'SOCKET', description: 'source QEMU\'s QMP unix socket' },
    ram: { type: 'string', valueName: 'FILE', description: 'source RAM file', defaultText: 'the memory-backend-file QEMU maps' },
    to: { type: 'string', valueName: 'PEER', description: 'destination node: peer id or multiaddr' },
    'dest-qmp': { type: 'string', valueName: 'SOCKET', description: 'destination QEMU\'s QMP unix socket (QEMU started with -incoming defer)' },
    'dest-repo': { type: 'string', valueName: 'DIR', description: 'destination repository (its daemon re-hashes the delivered RAM)' },
    'dest-ram': { type: 'string', valueName: 'FILE', description: 'destination RAM file', defaultText: 'the memory-backend-file QEMU maps' },
    name: { type: 'string', short: 'n', valueName: 'NAME', description: 'image name', defaultText: 'the RAM file\'s name' },
    incoming: { type: 'string', valueName: 'URI', description: 'QEMU migration URI the destination listens on for the device state', defaultText: 'tcp:127.0.0.1:0 (any free port)' },
    live: { type: 'boolean', description: 'pre-copy rounds while the guest runs (else stop it first)' },
    'min-dirty': { type: 'string', valueName: 'N', description: 'stop pre-copy once a round changes at most N pages', defaultText: String(DEFAULT_LIVE_MIN_DIRTY_PAGES) },
    'max-rounds': { type: 'string', valueName: 'N', description: 'most pre-copy rounds', defaultText: String(DEFAULT_LIVE_MAX_ROUNDS) },
    'no-resume': { type: 'boolean', description: 'leave the destination paused after verification (resume it with QMP cont)' }
  },
  examples: [
    { command: 'memfabric qemu migrate --live --qmp /run/vm1.qmp --to 12D3KooW... --dest-qmp /run/vm1-in.qmp --dest-repo /srv/dst/memfabric --incoming tcp:10.2.0.7:4444' }
  ],
  handlerInit (args, env): QemuMigrateParams {
    const [sub] = takePositionals(args, ['SUBCOMMAND'])
    if (sub !== 'migrate') throw new UsageError(`unknown subcommand 'qemu ${sub}' (try 'qemu migrate')`)
    const ram = nonEmptyOption(args, 'ram')
    const destRam = nonEmptyOption(args, 'dest-ram')
    return {
      ...globalParams(args, env),
      // the daemon runs in another directory: hand it absolute paths
      qmp: resolve(required(nonEmptyOption(args, 'qmp'), 'qmp', 'SOCKET')),
      destQmp: resolve(required(nonEmptyOption(args, 'dest-qmp'), 'dest-qmp', 'SOCKET')),
      destRepo: resolve(required(nonEmptyOption(args, 'dest-repo'), 'dest-repo', 'DIR')),
      to: required(nonEmptyOption(args, 'to'), 'to', 'PEER'),
      ram: ram !== undefined ? resolve(ram) : undefined,
      destRam: destRam !== undefined ? resolve(destRam) : undefined,
      name: nonEmptyOption(args, 'name'),
      incoming: nonEmptyOption(args, 'incoming'),
      live: args.values.live === true,
      noResume: args.values['no-resume'] === true,
      minDirtyPages: positiveInt(stringOption(args, 'min-dirty'), 'min-dirty'),
      maxRounds: positiveInt(stringOption(args, 'max-rounds'), 'max-rounds')
    }
  },
  async handler (params, ctx) {
    const { migrateQemu } = await import('../../qemu/index.ts')
    const source = await ctx.connect(params.repo)
    const progress = ctx.progress('migrate', params.json)
    try {
      const destination = await ctx.connect(params.destRepo)
      try {
        const report = await migrateQemu({
          source,
          destination,
          destRepo: params.destRepo,
          sourceQmp: params.qmp,
          destQmp: params.destQmp,
          to: params.to,
          ram: params.ram,
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
        await destination.close()
      }
    } finally {
      progress.done()
      await source.close()
    }
  }
})
