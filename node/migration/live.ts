import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import type { Store } from '../../store/index.ts'
import { DEFAULT_LIVE_MAX_ROUNDS, DEFAULT_LIVE_MIN_DIRTY_PAGES } from '../constants.ts'
import type { MigrationReport } from './index.ts'

const log = logger('memfabric:live')

export interface LiveRound {
  round: number
  root: string
  dirtyPages: number
  final: boolean
  report: MigrationReport
}

export interface LiveMigrationInit {
  store: Store
  /** Ask the destination to pull `root`; `previous` is the root of the round it supersedes. */
  offer(root: CID, round: number, previous: CID | undefined, final: boolean): Promise<MigrationReport>
  /**
   * Pause the source VM before the final round (e.g. QMP `stop`). Always the caller's function:
   * over the control API it is a callback into the process that asked for the migration, which
   * runs whatever it wants there (`migrate --pause-cmd` runs its command in the CLI); the daemon
   * itself never runs a command it was sent.
   */
  pause?(): Promise<void>
  minDirtyPages?: number
  maxRounds?: number
  signal?: AbortSignal
  onRound?(round: LiveRound): void
}

export interface LiveMigrationResult {
  rounds: LiveRound[]
  final: MigrationReport
  /** From the pause to the destination holding the final image (ms). */
  downtimeMs: number
}

/**
 * Iterative pre-copy of a RAM file that keeps changing: every round re-reads the file (an import:
 * only pages whose content changed are new) and the destination pulls only those. Rounds stop
 * when the change set is small or stops shrinking; then the source is paused and a final
 * round ships the last changes.
 */
export async function migrateLive (file: string, init: LiveMigrationInit): Promise<LiveMigrationResult> {
  const minDirty = init.minDirtyPages ?? DEFAULT_LIVE_MIN_DIRTY_PAGES
  const maxRounds = init.maxRounds ?? DEFAULT_LIVE_MAX_ROUNDS
  const rounds: LiveRound[] = []
  let previous: CID | undefined
  let previousDirty = Infinity

  const round = async (n: number, final: boolean): Promise<LiveRound> => {
    init.signal?.throwIfAborted()
    const imported = await init.store.importImage(file, { signal: init.signal })
    const dirtyPages = n === 1 ? imported.pages - imported.zeroPages : imported.newPages
    const report = await init.offer(imported.root, n, previous, final)
    if (previous != null && !previous.equals(imported.root)) {
      await init.store.remove(previous).catch(() => {})
    }
    previous = imported.root
    const result: LiveRound = { round: n, root: imported.root.toString(), dirtyPages, final, report }
    log('round %d: %d dirty pages, %d WAN bytes', n, dirtyPages, report.wanBytes)
    rounds.push(result)
    init.onRound?.(result)
    return result
  }

  for (let n = 1; n <= maxRounds; n++) {
    const { dirtyPages } = await round(n, false)
    if (n > 1 && (dirtyPages <= minDirty || dirtyPages >= previousDirty)) break
    previousDirty = dirtyPages
  }

  const paused = performance.now()
  await init.pause?.()
  const last = await round(rounds.length + 1, true)
  return { rounds, final: last.report, downtimeMs: performance.now() - paused }
}
