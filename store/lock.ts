/**
 * The repository lock: `repo.lock` holds the PID of the process that has the repo open.
 */
import { open, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { RepoLockedError } from './errors.ts'

export const LOCK_FILE = 'repo.lock'

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err: any) {
    // EPERM means the process exists but belongs to someone else
    return err.code === 'EPERM'
  }
}

/** Take the lock; a lock left by a dead process is taken over. Returns the release function. */
export async function acquireLock (dir: string): Promise<() => Promise<void>> {
  const file = join(dir, LOCK_FILE)
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(file, 'wx')
      await fh.writeFile(`${process.pid}\n`)
      await fh.close()
      let released = false
      return async () => {
        if (released) return
        released = true
        await unlink(file).catch(() => {})
      }
    } catch (err: any) {
      if (err.code !== 'EEXIST') throw err
    }
    const text = await readFile(file, 'utf8').catch(() => '')
    const pid = Number.parseInt(text.trim(), 10)
    if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
      throw new RepoLockedError(`repository ${dir} is in use by PID ${pid}`)
    }
    // stale (dead PID or a half-written file): take it over
    await unlink(file).catch(() => {})
  }
  throw new RepoLockedError(`repository ${dir} is in use (could not take ${file})`)
}
