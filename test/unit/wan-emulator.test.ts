import net from 'node:net'
import { performance } from 'node:perf_hooks'
import test from 'ava'
import { WanEmulator } from '../../testnet/wan/index.ts'
import type { WanEmulatorInit } from '../../testnet/wan/index.ts'
import type { ExecutionContext } from 'ava'

const MiB = 1024 * 1024
const SITES = [{ id: 1, name: 'A' }, { id: 2, name: 'B' }]

async function createWan (t: ExecutionContext, init: Omit<WanEmulatorInit, 'sites'>): Promise<WanEmulator> {
  const wan = await WanEmulator.create({ sites: SITES, ...init })
  t.teardown(async () => { await wan.close() })
  return wan
}

/** A server in a site's range; every accepted socket is destroyed at teardown. */
async function listen (t: ExecutionContext, host: string, onSocket: (socket: net.Socket) => void): Promise<{ host: string, port: number }> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer(socket => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    onSocket(socket)
  })
  await new Promise<void>(resolve => server.listen({ host, port: 0 }, resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise(resolve => server.close(resolve))
  })
  return { host, port: (server.address() as net.AddressInfo).port }
}

const echoServer = async (t: ExecutionContext, host: string): Promise<{ host: string, port: number }> =>
  listen(t, host, socket => socket.pipe(socket))

/** A server that counts the bytes it receives and resolves `done(n)` once n bytes arrived. */
async function sinkServer (t: ExecutionContext, host: string): Promise<{ host: string, port: number, received: () => number, until: (n: number) => Promise<number> }> {
  let received = 0
  const waiters: Array<{ n: number, resolve: (at: number) => void }> = []
  const address = await listen(t, host, socket => {
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length
      const now = performance.now()
      for (const w of [...waiters]) {
        if (received >= w.n) { waiters.splice(waiters.indexOf(w), 1); w.resolve(now) }
      }
    })
  })
  return {
    ...address,
    received: () => received,
    until: async n => new Promise(resolve => { received >= n ? resolve(performance.now()) : waiters.push({ n, resolve }) })
  }
}

async function connect (t: ExecutionContext, address: string): Promise<net.Socket> {
  const [host, port] = address.split(':')
  const socket = net.connect({ host, port: Number(port), noDelay: true })
  t.teardown(() => { socket.destroy() })
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  return socket
}

async function readBytes (socket: net.Socket, n: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let got = 0
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk)
      got += chunk.length
      if (got >= n) { socket.off('data', onData); resolve(Buffer.concat(chunks)) }
    }
    socket.on('data', onData)
    socket.once('error', reject)
  })
}

async function pollUntil (check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) return false
    await new Promise(resolve => setImmediate(resolve))
  }
  return true
}

const linkStats = (wan: WanEmulator, from: number, to: number) => wan.stats().find(s => s.from === from && s.to === to)

test.serial('an echo round trip between two sites takes at least the WAN RTT', async t => {
  const wan = await createWan(t, { wanRttMs: 100, wanMbit: 100 })
  const echo = await echoServer(t, '127.0.2.1')
  const proxies = await wan.expose({ site: 2, ...echo })
  t.deepEqual([...proxies.keys()], [1])
  t.is(proxies.get(1)?.host, '127.0.1.254')
  const map = wan.dialMap(1)
  const proxy = map[`${echo.host}:${echo.port}`]
  t.is(proxy, `127.0.1.254:${proxies.get(1)?.port}`)
  const socket = await connect(t, proxy)
  for (let i = 0; i < 3; i++) {
    const start = performance.now()
    socket.write('x')
    await readBytes(socket, 1)
    const rtt = performance.now() - start
    t.log(`round trip ${rtt.toFixed(1)} ms`)
    t.true(rtt >= 100, `rtt ${rtt}`)
    t.true(rtt < 400, `rtt ${rtt}`)
  }
})

test.serial('bandwidth: 2 MiB over an 8 Mbit/s link takes about 2 s', async t => {
  const wan = await createWan(t, { wanRttMs: 20, wanMbit: 8 })
  const sink = await sinkServer(t, '127.0.2.1')
  await wan.expose({ site: 2, host: sink.host, port: sink.port })
  const socket = await connect(t, wan.dialMap(1)[`${sink.host}:${sink.port}`])
  const size = 2 * MiB
  const expectedMs = size * 8 / 8e6 * 1000
  const start = performance.now()
  socket.write(Buffer.alloc(size, 7))
  const elapsed = await sink.until(size) - start
  t.log(`2 MiB in ${elapsed.toFixed(0)} ms (expected ${expectedMs.toFixed(0)} ms)`)
  t.true(elapsed >= 0.8 * expectedMs, `elapsed ${elapsed}`)
  t.true(elapsed < 3 * expectedMs, `elapsed ${elapsed}`)
  t.is(sink.received(), size)
})

test.serial('two concurrent connections share the bandwidth of one link', async t => {
  const wan = await createWan(t, { wanRttMs: 20, wanMbit: 8 })
  const sinkA = await sinkServer(t, '127.0.2.1')
  const sinkB = await sinkServer(t, '127.0.2.2')
  await wan.expose({ site: 2, host: sinkA.host, port: sinkA.port })
  await wan.expose({ site: 2, host: sinkB.host, port: sinkB.port })
  const map = wan.dialMap(1)
  const a = await connect(t, map[`${sinkA.host}:${sinkA.port}`])
  const b = await connect(t, map[`${sinkB.host}:${sinkB.port}`])
  const size = 1 * MiB
  const expectedMs = 2 * size * 8 / 8e6 * 1000
  const start = performance.now()
  a.write(Buffer.alloc(size, 1))
  b.write(Buffer.alloc(size, 2))
  const [doneA, doneB] = await Promise.all([sinkA.until(size), sinkB.until(size)])
  const total = Math.max(doneA, doneB) - start
  t.log(`A ${(doneA - start).toFixed(0)} ms, B ${(doneB - start).toFixed(0)} ms, expected together ${expectedMs.toFixed(0)} ms`)
  t.true(total >= 0.8 * expectedMs, `total ${total}`)
  t.true(total < 3 * expectedMs, `total ${total}`)
  // sharing, not taking turns: the first to finish still needed well over its solo time
  t.true(Math.min(doneA, doneB) - start >= 0.6 * expectedMs, 'both progressed together')
  t.is(linkStats(wan, 1, 2)?.connections, 2)
})

test.serial('byte counters equal the bytes sent, per direction', async t => {
  const wan = await createWan(t, { wanRttMs: 10, wanMbit: 100 })
  const echo = await echoServer(t, '127.0.2.1')
  await wan.expose({ site: 2, ...echo })
  const socket = await connect(t, wan.dialMap(1)[`${echo.host}:${echo.port}`])
  const size = 300_001
  const payload = Buffer.alloc(size)
  for (let i = 0; i < size; i++) payload[i] = (i * 31 + 7) & 0xff
  socket.write(payload)
  const back = await readBytes(socket, size)
  t.true(back.equals(payload), 'bytes come back intact and in order')
  t.is(linkStats(wan, 1, 2)?.bytes, size)
  t.is(linkStats(wan, 2, 1)?.bytes, size)
  t.is(linkStats(wan, 1, 2)?.connections, 1)
  // half-close travels through the proxy: ending our side ends the echo, which ends ours
  const ended = new Promise(resolve => socket.once('end', resolve))
  socket.end()
  await ended
  t.true(await pollUntil(() => linkStats(wan, 1, 2)?.activeConnections === 0), 'connection torn down')
})

test.serial('same-site traffic does not pass the WAN link; with lanMbit it uses the LAN link', async t => {
  const wan = await createWan(t, { wanRttMs: 10, wanMbit: 100 })
  const echo = await echoServer(t, '127.0.2.1')
  await wan.expose({ site: 2, ...echo })
  t.deepEqual(wan.dialMap(2), {}, 'a node of site 2 dials its neighbour directly')
  const direct = await connect(t, `${echo.host}:${echo.port}`)
  direct.write(Buffer.alloc(1000))
  await readBytes(direct, 1000)
  t.true(wan.stats().every(s => s.bytes === 0 && s.connections === 0))

  const lan = await createWan(t, { wanRttMs: 10, wanMbit: 100, lanMbit: 1000 })
  await lan.expose({ site: 2, ...echo })
  const viaLan = await connect(t, lan.dialMap(2)[`${echo.host}:${echo.port}`])
  viaLan.write(Buffer.alloc(1000))
  await readBytes(viaLan, 1000)
  t.is(linkStats(lan, 2, 2)?.bytes, 2000, 'both directions on the shared LAN link')
  t.is(linkStats(lan, 1, 2)?.bytes, 0)
  t.is(linkStats(lan, 2, 1)?.bytes, 0)
})

test.serial('the link queue stays bounded: a fast sender is paused', async t => {
  const wan = await createWan(t, { wanRttMs: 10, wanMbit: 8, queueBytes: 128 * 1024 })
  const sink = await sinkServer(t, '127.0.2.1')
  await wan.expose({ site: 2, host: sink.host, port: sink.port })
  const socket = await connect(t, wan.dialMap(1)[`${sink.host}:${sink.port}`])
  socket.write(Buffer.alloc(8 * MiB))
  let maxInFlight = 0
  const deadline = performance.now() + 500
  await pollUntil(() => {
    maxInFlight = Math.max(maxInFlight, linkStats(wan, 1, 2)?.inFlightBytes ?? 0)
    return performance.now() > deadline
  })
  t.log(`max in flight ${maxInFlight} bytes`)
  // queue + the socket reads (64 KiB each) that cross it or were already read when paused,
  // + the delay line: far below the 8 MiB written
  t.true(maxInFlight <= 128 * 1024 + 4 * 65536, `in flight ${maxInFlight}`)
  t.true(sink.received() < 2 * MiB, 'the sender is throttled, not buffered whole')
})

test.serial('close() frees every port and closes open connections; it is idempotent', async t => {
  const wan = await WanEmulator.create({ sites: SITES, wanRttMs: 10, wanMbit: 100 })
  const echo = await echoServer(t, '127.0.2.1')
  const proxies = await wan.expose({ site: 2, ...echo })
  const proxy = proxies.get(1)
  if (proxy == null) throw new Error('no proxy')
  const socket = await connect(t, `${proxy.host}:${proxy.port}`)
  const closed = new Promise(resolve => socket.once('close', resolve))
  socket.on('error', () => {})
  await Promise.all([wan.close(), wan.close()])
  await closed
  const server = net.createServer()
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen({ host: proxy.host, port: proxy.port }, resolve) })
  await new Promise(resolve => server.close(resolve))
  t.pass()
  await t.throwsAsync(wan.expose({ site: 2, ...echo }), { code: 'ERR_WAN_CLOSED' })
})

test('invalid options and unknown sites are typed errors', async t => {
  await t.throwsAsync(WanEmulator.create({ sites: [{ id: 0 }] }), { code: 'ERR_WAN_INVALID_OPTIONS' })
  await t.throwsAsync(WanEmulator.create({ sites: [{ id: 1 }, { id: 1 }] }), { code: 'ERR_WAN_INVALID_OPTIONS' })
  await t.throwsAsync(WanEmulator.create({ sites: SITES, wanMbit: 0 }), { code: 'ERR_WAN_INVALID_OPTIONS' })
  const wan = await createWan(t, {})
  t.throws(() => wan.dialMap(9), { code: 'ERR_WAN_UNKNOWN_SITE' })
  await t.throwsAsync(wan.expose({ site: 2, host: '127.0.1.1', port: 1 }), { code: 'ERR_WAN_INVALID_OPTIONS' })
})
