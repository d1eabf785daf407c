import test from 'ava'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QmpClient, installRam } from '../../qemu/index.ts'
import { fakeQmp } from '../fixtures/guest/fake-qmp.ts'

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
