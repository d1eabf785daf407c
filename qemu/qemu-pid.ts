/**
 * The PID of the QEMU behind a QMP unix socket, for the dirty tracker (which reads that
 * process's pagemap). QMP itself does not tell, and Node cannot read a connection's peer
 * credentials (SO_PEERCRED), so: find the listening socket bound to the path in
 * `/proc/net/unix` (flag __SO_ACCEPTCON), take its socket inode, and find the processes
 * holding `socket:[inode]` among `/proc/PID/fd`. A socket bound by a relative path is matched
 * against each holder's current directory.
 *
 * Limits: only processes of this network namespace are seen (`/proc/net/unix` is per
 * namespace) and reading other users' fd tables needs root or the same uid. When several
 * processes hold the socket (a manager that passed the fd to QEMU and kept it), the one whose
 * executable is a qemu-system binary is taken; still ambiguous is an error. The caller should
 * also check that the process maps the RAM file (findRamMappings in dirty-tracker.ts).
 */
import { readdir, readFile, readlink, stat } from 'node:fs/promises'
import { basename, isAbsolute, resolve } from 'node:path'
import { QmpConnectError } from './errors.ts'

/** `__SO_ACCEPTCON` in /proc/net/unix's Flags column: the socket listens. */
const SO_ACCEPTCON = 0x10000

export interface QemuPidOptions {
  /** procfs root. Default `/proc`. */
  proc?: string
}

/** One listening unix socket of /proc/net/unix. */
interface Listener {
  inode: number
  path: string
}

/** The PID of the process listening on the QMP unix socket `qmpPath` (resolved against our cwd). */
export async function qemuPid (qmpPath: string, options: QemuPidOptions = {}): Promise<number> {
  const proc = options.proc ?? '/proc'
  const target = resolve(qmpPath)
  const st = await stat(target).catch((err: any) => { throw new QmpConnectError(`no QMP socket at ${target}: ${err.code ?? err.message}`, { cause: err }) })
  if (!st.isSocket()) throw new QmpConnectError(`${target} is not a unix socket`)
  const listeners = (await readListeners(proc)).filter(l => l.path === target || (!isAbsolute(l.path) && basename(l.path) === basename(target)))
  if (listeners.length === 0) throw new QmpConnectError(`no process listens on ${target} in this network namespace`)
  const byInode = new Map(listeners.map(l => [l.inode, l]))
  const holders: number[] = []
  for (const name of await readdir(proc)) {
    if (!/^\d+$/.test(name)) continue
    const pid = Number(name)
    const held = await heldSockets(proc, pid, byInode)
    if (held.length === 0) continue
    for (const l of held) {
      if (l.path === target || await relativeMatches(proc, pid, l.path, target)) {
        holders.push(pid)
        break
      }
    }
  }
  if (holders.length === 1) return holders[0]
  if (holders.length === 0) throw new QmpConnectError(`no process holds the socket listening on ${target} (not ours to read without root?)`)
  const qemus: number[] = []
  for (const pid of holders) {
    const exe = await readlink(`${proc}/${pid}/exe`).catch(() => '')
    if (basename(exe).startsWith('qemu-system')) qemus.push(pid)
  }
  if (qemus.length === 1) return qemus[0]
  throw new QmpConnectError(`several processes hold the QMP socket ${target}: ${holders.join(', ')}`)
}

async function readListeners (proc: string): Promise<Listener[]> {
  const text = await readFile(`${proc}/net/unix`, 'utf8').catch((err: any) => { throw new QmpConnectError(`cannot read ${proc}/net/unix: ${err.code ?? err.message}`, { cause: err }) })
  const out: Listener[] = []
  // Num RefCount Protocol Flags Type St Inode Path
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 8) continue
    if ((parseInt(f[3], 16) & SO_ACCEPTCON) === 0) continue
    out.push({ inode: Number(f[6]), path: f.slice(7).join(' ') })
  }
  return out
}

/** The listeners among `byInode` whose socket process `pid` holds ([] if its fds are unreadable). */
async function heldSockets (proc: string, pid: number, byInode: Map<number, Listener>): Promise<Listener[]> {
  const dir = `${proc}/${pid}/fd`
  const fds = await readdir(dir).catch(() => [] as string[])
  const held: Listener[] = []
  for (const fd of fds) {
    const link = await readlink(`${dir}/${fd}`).catch(() => '')
    const m = /^socket:\[(\d+)\]$/.exec(link)
    const l = m != null ? byInode.get(Number(m[1])) : undefined
    if (l != null) held.push(l)
  }
  return held
}

async function relativeMatches (proc: string, pid: number, bound: string, target: string): Promise<boolean> {
  if (isAbsolute(bound)) return false
  const cwd = await readlink(`${proc}/${pid}/cwd`).catch(() => undefined)
  return cwd !== undefined && resolve(cwd, bound) === target
}
