/**
 * Runtime settings of a long-running daemon. Measured (docs/bench-migrate-memory.md): with
 * V8's defaults the young generation grows to two 64 MiB halves under a migration's allocation
 * rate (4 MiB halves here: 8 MiB halves held ~19 MB more at the same CPU), and glibc keeps one arena per allocating thread plus every freed chunk below its
 * mmap threshold, which together hold ~200 MB of a destination's RSS without holding data;
 * and on a host with much RAM V8 lets the old generation grow to up to 4x its live size before
 * a mark-compact (`--heap-growing-percent=50`: 1.5x; the heap limit itself stays V8's, so a
 * daemon that needs more heap still gets it, after more frequent collections).
 * V8 flags must be given at start, so `memfabric daemon` replaces its own process (same
 * PID, same stdio) once with them. An environment that already sets them wins; setting
 * MEMFABRIC_RUNTIME_TUNED skips this.
 */
import { splitCommand } from './argv.ts'

export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=4', '--heap-growing-percent=50']
export const DAEMON_ENV: Record<string, string> = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072' }

/** Re-execute a `daemon` command line with DAEMON_NODE_FLAGS and DAEMON_ENV (no-op otherwise). */
export function tuneDaemonRuntime (argv: string[] = process.argv, env: NodeJS.ProcessEnv = process.env): void {
  if (env.MEMFABRIC_RUNTIME_TUNED != null || typeof process.execve !== 'function' || splitCommand(argv.slice(2)).name !== 'daemon') {
    return
  }
  const flags = DAEMON_NODE_FLAGS.filter(flag => !process.execArgv.some(a => a.startsWith(flag.split('=')[0])))
  process.execve(process.execPath, [process.execPath, ...process.execArgv, ...flags, ...argv.slice(1)], { ...DAEMON_ENV, ...env, MEMFABRIC_RUNTIME_TUNED: '1' })
}
