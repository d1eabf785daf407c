/**
 * `memfabric migrate REF --to PEER`: offer an image to a destination, which pulls every page
 * from the holder nearest to it and reports back.
 */
import { stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { PAGE_SIZE } from '../../store/constants.ts'
import type { MemfabricApi, MigrationSummary, ProgressUpdate } from '../../node/api/index.ts'
import { TIERS } from '../../node/migration/index.ts'
import { defineCommand, withApi, globalParams, nonEmptyOption, stringOption, takePositionals, UsageError } from '../command.ts'
import type { CommandContext, GlobalParams } from '../command.ts'
import { pauseWithCommand } from '../pause-command.ts'
import { formatBytes, formatCount, formatDuration, formatFields, formatPercent, formatRate, formatTable } from '../output.ts'

export interface MigrateParams extends GlobalParams {
  ref: string
  to: string
  name?: string
  out?: string
  live: boolean
  pauseCommand?: string
  minDirtyPages?: number
  maxRounds?: number
}

const TIER_LABEL = { local: 'local store', site: 'same site', remote: 'other sites', source: 'source' }

/** The report as people read it. */
export function formatMigrationReport (report: MigrationSummary): string {
  const lines = [
    `migrated ${report.name ?? report.root}`,
    formatFields([
      ['root', report.root],
      ['size', `${formatBytes(report.size)} in ${formatCount(report.pages)} pages (${formatPercent(report.zeroPages, report.pages)} zero)`],
      ['WAN bytes', `${formatBytes(report.wanBytes)} (${formatPercent(report.wanBytes, report.size)} of the image)`],
      ['time', `${formatDuration(report.durationMs / 1000)} at ${formatRate(report.throughput)}`],
      ['rounds', String(report.rounds)],
      ...(report.downtimeMs !== undefined ? [['downtime', formatDuration(report.downtimeMs / 1000)] as [string, string]] : []),
      ...(report.out !== undefined ? [['written to', report.out] as [string, string]] : [])
    ]),
    '',
    formatTable([{ header: 'TIER' }, { header: 'PAGES', right: true }, { header: 'BYTES', right: true }, { header: 'ON THE WIRE', right: true }],
      TIERS.map(t => [TIER_LABEL[t], formatCount(report.tiers[t].pages), formatBytes(report.tiers[t].bytes), t === 'local' ? '-' : formatBytes(report.tiers[t].wireBytes)]))
  ]
  if (report.roundsDetail !== undefined) {
    lines.push('', formatTable([{ header: 'ROUND' }, { header: 'DIRTY PAGES', right: true }, { header: 'WAN BYTES', right: true }, { header: 'TIME', right: true }],
      report.roundsDetail.map(r => [`${r.round}${r.final ? ' (final)' : ''}`, formatCount(r.dirtyPages), formatBytes(r.report.wanBytes), formatDuration(r.report.durationMs / 1000)])))
  }
  if (report.droppedHolders.length > 0) {
    lines.push('', 'dropped holders:', ...report.droppedHolders.map(d => `  ${d.peerId}: ${d.reason}`))
  }
  return lines.join('\n')
}

/** Run a migration through the api with a progress bar (pages) and print its report. */
export async function runMigration (ctx: CommandContext, params: GlobalParams, label: string,
  call: (api: MemfabricApi, onProgress: (update: ProgressUpdate) => void) => Promise<MigrationSummary>): Promise<number> {
  return await withApi(ctx, params.repo, async api => {
    const progress = ctx.progress(label, params.json, PAGE_SIZE)
    try {
      const report = await call(api, update => { progress.update(update) })
      progress.done()
      if (params.json) ctx.printJson(report)
      else ctx.print(formatMigrationReport(report))
      return 0
    } finally {
      progress.done()
    }
  })
}

function positiveInt (value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value)) throw new UsageError(`option '--${flag}' needs a whole number, got '${value}'`)
  return Number(value)
}

export const migrateCommand = defineCommand({
  name: 'migrate',
  description: 'move an image to another node: it fetches each page from the nearest holder (needs a daemon)',
  usage: 'migrate REF --to PEER [--name NAME] [--out PATH] [--live --pause-cmd CMD]',
  details: 'REF is an image name, a root CID, or a memory file to import first (a path relative to the current directory). The destination plans every page: its own store, then peers of its site, then peers elsewhere, and the source last; every page is verified against its CID. --out names the memory file the destination writes, inside its <repo>/out folder. --live runs pre-copy rounds on a RAM file that keeps changing, pauses the VM with --pause-cmd, and ships the last changes; the pause command runs in this process, not in the daemon.',
  args: [
    { name: 'REF', description: 'image name, root CID, or memory file' }
  ],
  options: {
    to: { type: 'string', valueName: 'PEER', description: 'destination: peer id or multiaddr' },
    name: { type: 'string', short: 'n', valueName: 'NAME', description: 'image name at the destination', defaultText: 'the source\'s name' },
    out: { type: 'string', short: 'o', valueName: 'PATH', description: 'memory file the destination writes (relative to its <repo>/out)' },
    live: { type: 'boolean', description: 'iterative pre-copy while the RAM file keeps changing' },
    'pause-cmd': { type: 'string', valueName: 'CMD', description: 'shell command this CLI runs to pause the VM before the final round (--live)' },
    'min-dirty': { type: 'string', valueName: 'N', description: 'stop pre-copy once a round changes at most N pages', defaultText: '256' },
    'max-rounds': { type: 'string', valueName: 'N', description: 'most pre-copy rounds', defaultText: '8' }
  },
  examples: [
    { command: 'memfabric migrate vm1 --to 12D3KooW... --out vm1.ram' },
    { command: 'memfabric migrate /dev/shm/vm1.ram --live --pause-cmd "kill -STOP 4242" --to /ip4/10.1.0.7/tcp/4001/p2p/12D3KooW...' }
  ],
  handlerInit (args, env): MigrateParams {
    const [ref] = takePositionals(args, ['REF'])
    const to = nonEmptyOption(args, 'to')
    if (to === undefined) throw new UsageError('missing --to PEER')
    const live = args.values.live === true
    const pauseCommand = nonEmptyOption(args, 'pause-cmd')
    if (pauseCommand !== undefined && !live) throw new UsageError('--pause-cmd only applies with --live')
    return {
      ...globalParams(args, env),
      ref,
      to,
      name: nonEmptyOption(args, 'name'),
      out: nonEmptyOption(args, 'out'),
      live,
      pauseCommand,
      minDirtyPages: positiveInt(stringOption(args, 'min-dirty'), 'min-dirty'),
      maxRounds: positiveInt(stringOption(args, 'max-rounds'), 'max-rounds')
    }
  },
  async handler (params, ctx) {
    const ref = await resolveRef(params.ref)
    return await runMigration(ctx, params, 'migrate', async (api, onProgress) => api.migrate(ref, params.to, {
      name: params.name,
      out: params.out,
      live: params.live,
      pause: params.pauseCommand !== undefined ? pauseWithCommand(params.pauseCommand, { signal: ctx.signal }) : undefined,
      minDirtyPages: params.minDirtyPages,
      maxRounds: params.maxRounds,
      signal: ctx.signal,
      onProgress
    }))
  }
})

/**
 * REF as the daemon must see it: a file here (relative to this process's working directory)
 * becomes its absolute path; anything else (a name, a CID) goes as given.
 */
export async function resolveRef (ref: string): Promise<string> {
  const path = resolve(ref)
  const isFile = await stat(path).then(s => s.isFile(), () => false)
  return isFile ? path : ref
}
