/**
 * `migrate --live --pause-cmd CMD`: the command that pauses the VM runs here, in the CLI's
 * process, with the caller's rights and working directory. The daemon only calls back when
 * the pre-copy rounds converge (node/api/rpc.ts); it never receives the command.
 */
import { exec } from 'node:child_process'
import { PauseCommandError } from '../node/migration/errors.ts'

/** A pause callback that runs `command` in a shell and resolves once it exits 0. */
export function pauseWithCommand (command: string, options: { signal?: AbortSignal } = {}): () => Promise<void> {
  return async () => {
    await new Promise<void>((resolve, reject) => {
      exec(command, { signal: options.signal }, (err, _stdout, stderr) => {
        if (err == null) { resolve(); return }
        const detail = stderr.trim() !== '' ? `: ${stderr.trim().split('\n').at(-1)}` : ''
        reject(new PauseCommandError(`pause command failed (${err.code ?? err.signal ?? err.message})${detail}`, { cause: err }))
      })
    })
  }
}
