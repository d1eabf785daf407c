/**
 * The live migration's pause hook: the daemon runs a command; the command asks this process
 * to stop the guest.
 */
import { createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * The daemon's pause hook, pointed back at this process: a unix socket we listen on and a
 * one-line Node client for the daemon to run as its pause command. The daemon runs it when
 * the pre-copy rounds converge; we stop the guest over our QMP connection (QEMU serves one
 * QMP client per socket) and answer `ok`, and the daemon runs the final round.
 */
export class PauseHook {
  readonly command: string
  private readonly server: Server
  private readonly dir: string
  private readonly sockets = new Set<Socket>()

  private constructor (server: Server, dir: string, command: string) {
    this.server = server
    this.dir = dir
    this.command = command
  }

  static async create (pause: () => Promise<void>, timeout: number): Promise<PauseHook> {
    const dir = await mkdtemp(join(tmpdir(), 'memfabric-qemu-'))
    const path = join(dir, 'pause.sock')
    const server = createServer()
    const hook = new PauseHook(server, dir, pauseCommand(path, timeout))
    server.on('connection', (socket) => {
      hook.sockets.add(socket)
      socket.on('close', () => hook.sockets.delete(socket))
      socket.setEncoding('utf8')
      socket.setTimeout(timeout, () => socket.destroy())
      let line = ''
      let asked = false
      socket.on('data', (chunk: string) => {
        if (asked) return
        line += chunk
        if (line.length > 64) { socket.destroy(); return }
        if (!line.includes('\n')) return
        asked = true
        pause().then(
          () => socket.end('ok\n'),
          (err: Error) => socket.end(`cannot pause the guest: ${err.message.replace(/\n/g, ' ')}\n`)
        )
      })
      socket.on('error', () => {})
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(path, () => { server.off('error', reject); resolve() })
    })
    return hook
  }

  async close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>(resolve => { this.server.close(() => { resolve() }) })
    await rm(this.dir, { recursive: true, force: true })
  }
}

/** A shell command that asks the hook at `path` to pause and exits 0 once it has. */
function pauseCommand (path: string, timeout: number): string {
  const script = `const s=require('net').connect(process.argv[1]);let b='';const t=setTimeout(()=>{console.error('pause hook: no answer');process.exit(3)},${timeout});` +
    `s.setEncoding('utf8');s.on('data',d=>{b+=d;const i=b.indexOf('\\n');if(i<0){if(b.length>4096)process.exit(4);return}clearTimeout(t);const l=b.slice(0,i);if(l==='ok')process.exit(0);console.error(l);process.exit(1)});` +
    `s.on('error',e=>{console.error('pause hook: '+e.message);process.exit(2)});s.write('pause\\n')`
  return [process.execPath, '-e', script, path].map(shellQuote).join(' ')
}

function shellQuote (s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}
