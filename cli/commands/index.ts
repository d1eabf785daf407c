/**
 * The registry of CLI commands, in the order `memfabric --help` lists them.
 *
 * To add a command: write `cli/commands/<name>.ts` exporting a `defineCommand({...})`, import
 * it here and append it to `commands`.
 *
 * Every module here is loaded on every run (`memfabric ls` included), so keep the top of a
 * command module light: import heavy parts (the store, libp2p, the node) inside `handler`
 * with `await import(...)`, as `init` and `connect` do.
 */
import type { AnyCommand } from '../command.ts'
import { initCommand } from './init.ts'
import { importCommand } from './import.ts'
import { exportCommand } from './export.ts'
import { lsCommand } from './ls.ts'
import { inspectCommand } from './inspect.ts'
import { rmCommand } from './rm.ts'
import { gcCommand } from './gc.ts'
import { statsCommand } from './stats.ts'
import { verifyCommand } from './verify.ts'
import { idCommand } from './id.ts'
import { peersCommand } from './peers.ts'
import { providersCommand } from './providers.ts'
import { daemonCommand } from './daemon.ts'
import { migrateCommand } from './migrate.ts'
import { pullCommand } from './pull.ts'
import { testnetCommand } from './testnet.ts'
import { qemuCommand } from './qemu.ts'

export const commands: AnyCommand[] = [
  initCommand,
  importCommand,
  exportCommand,
  lsCommand,
  inspectCommand,
  rmCommand,
  gcCommand,
  statsCommand,
  verifyCommand,
  idCommand,
  peersCommand,
  providersCommand,
  daemonCommand,
  migrateCommand,
  pullCommand,
  testnetCommand,
  qemuCommand
]

/** The command called `name`, if any. */
export function findCommand (name: string): AnyCommand | undefined {
  return commands.find(c => c.name === name)
}
