import test from 'ava'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ExecutionContext } from 'ava'
import { QmpClient, installRam } from '../../qemu/index.ts'

type Handler = (command: string, args: any, socket: Socket) => unknown

/** A fake QEMU QMP server on a unix socket: greets, then answers with `handler`. */
async function fakeQmp (t: ExecutionContext, handler: Handler, options: { greet?: string } = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-qmp-'))
  const path = join(dir, 'qmp.sock')
  const sockets = new Set<Socket>()
  const server = createServer(socket => {
    sockets.add(socket)
    socket.setEncoding('utf8')
    socket.write((options.greet ?? JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } }, capabilities: [] } })) + '\r\n')
    let buffered = ''
    socket.on('data', (chunk: string) => {
      buffered += chunk
      let i: number
      while ((i = buffered.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buffered.slice(0, i))
        buffered = buffered.slice(i + 1)
        if (msg.execute === 'qmp_capabilities') {
          socket.write(JSON.stringify({ return: {}, id: msg.id }) + '\r\n')
          continue
        }
        const answer = handler(msg.execute, msg.arguments, socket)
        if (answer === undefined) continue
        socket.write(JSON.stringify({ ...(answer as object), id: msg.id }) + '\r\n')
      }
    })
    socket.on('error', () => {})
  })
  await new Promise<void>(resolve => server.listen(path, resolve))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise(resolve => server.close(resolve))
    await rm(dir, { recursive: true, force: true })
  })
  return path
}

test('greeting, capabilities, commands matched by id, events kept', async t => {
  const path = await fakeQmp(t, (command, args, socket) => {
    if (command === 'stop') {
      socket.write(JSON.stringify({ event: 'STOP', timestamp: { seconds: 1, microseconds: 2 } }) + '\r\n')
      return { return: {} }
    }
    if (command === 'echo') return { return: args }
    return { error: { class: 'CommandNotFound', desc: `The command ${command} has not been found` } }
  })
  const qmp = await QmpClient.connect(path)
  t.teardown(() => { qmp.close() })
  t.is(qmp.version, '7.2.0')
  const [a, b] = await Promise.all([qmp.execute('echo', { n: 1 }), qmp.execute('echo', { n: 2 })])
  t.deepEqual([a, b], [{ n: 1 }, { n: 2 }])
  await qmp.execute('stop')
  const stop = await qmp.waitEvent(e => e.event === 'STOP', { timeout: 1000 })
  t.deepEqual(stop.timestamp, { seconds: 1, microseconds: 2 })
  const err = await t.throwsAsync(qmp.execute('nope'))
  t.is((err as any).code, 'ERR_QMP_COMMAND')
  t.is((err as any).errorClass, 'CommandNotFound')
})

test('a command QEMU never answers times out', async t => {
  const path = await fakeQmp(t, () => undefined)
  const qmp = await QmpClient.connect(path)
  t.teardown(() => { qmp.close() })
  const err = await t.throwsAsync(qmp.execute('query-status', undefined, { timeout: 100 }))
  t.is((err as any).code, 'ERR_QMP_TIMEOUT')
})

test('no greeting: connect times out; not QMP: refused; missing socket: connect error', async t => {
  const silent = await fakeQmp(t, () => undefined, { greet: '' })
  t.is((await t.throwsAsync(QmpClient.connect(silent, { timeout: 200 }))as any).code, 'ERR_QMP_TIMEOUT')
  const wrong = await fakeQmp(t, () => undefined, { greet: '{"hello":1}' })
  t.is((await t.throwsAsync(QmpClient.connect(wrong, { timeout: 1000 })) as any).code, 'ERR_QMP_PROTOCOL')
  t.is((await t.throwsAsync(QmpClient.connect('/nonexistent/qmp.sock')) as any).code, 'ERR_QMP_CONNECT')
})

test('an over-long line closes the connection', async t => {
  const path = await fakeQmp(t, (_c, _a, socket) => { socket.write('x'.repeat(5000)); return undefined })
  const qmp = await QmpClient.connect(path, { maxLine: 1024 })
  t.teardown(() => { qmp.close() })
  const err = await t.throwsAsync(qmp.execute('query-status'))
  t.is((err as any).code, 'ERR_QMP_PROTOCOL')
  t.is((await t.throwsAsync(qmp.execute('query-status')) as any).code, 'ERR_QMP_PROTOCOL')
})

test('installRam writes only differing pages, in place, and refuses a size mismatch', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-install-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const page = 4096
  const staged = Buffer.alloc(64 * page)
  for (let i = 0; i < 64; i += 3) staged.fill(i + 1, i * page, (i + 1) * page)
  const target = Buffer.from(staged)
  target.fill(0xee, 5 * page, 7 * page) // two stale pages
  target.fill(0xaa, 63 * page) // a stale last page
  await writeFile(join(dir, 'staged'), staged)
  await writeFile(join(dir, 'target'), target)
  const written = await installRam(join(dir, 'staged'), join(dir, 'target'), { chunk: 8 * page })
  t.is(written, 3)
  t.deepEqual(await readFile(join(dir, 'target')), staged)
  await writeFile(join(dir, 'short'), Buffer.alloc(page))
  t.is((await t.throwsAsync(installRam(join(dir, 'staged'), join(dir, 'short'))) as any).code, 'ERR_GUEST_RAM')
})
