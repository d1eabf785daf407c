import { performance } from 'node:perf_hooks'
import { PassThrough } from 'node:stream'
import test from 'ava'
import { Link } from '../../testnet/wan/index.ts'

/** Collects what a stream receives, with arrival times */
function collect (stream: PassThrough): { chunks: Array<{ at: number, data: Buffer }>, ended: Promise<void> } {
  const chunks: Array<{ at: number, data: Buffer }> = []
  stream.on('data', (data: Buffer) => chunks.push({ at: performance.now(), data }))
  return { chunks, ended: new Promise(resolve => stream.once('end', () => { resolve() })) }
}

test('every chunk is delayed by the latency, order is kept per flow, end follows data', async t => {
  const link = new Link({ name: 'test', latencyMs: 30 })
  t.teardown(() => { link.close() })
  const flows = [0, 1, 2].map(() => ({ src: new PassThrough(), dst: new PassThrough() }))
  const received = flows.map(({ src, dst }) => { link.pipe(src, dst); return collect(dst) })
  const sentAt: number[] = []
  for (let i = 0; i < 50; i++) {
    sentAt.push(performance.now())
    flows[i % 3].src.write(Buffer.from([i]))
  }
  for (const { src } of flows) src.end()
  await Promise.all(received.map(r => r.ended))
  for (let f = 0; f < 3; f++) {
    const values = received[f].chunks.flatMap(c => [...c.data])
    t.deepEqual(values, Array.from({ length: 50 }, (_, i) => i).filter(i => i % 3 === f))
    for (const chunk of received[f].chunks) t.true(chunk.at - sentAt[chunk.data[0]] >= 30)
  }
  t.is(link.stats().bytes, 50)
  t.is(link.stats().connections, 3)
})

test('bandwidth is serialized across flows and the queue bound pauses senders', async t => {
  // 1 Mbit/s: 12.5 KiB take 100 ms
  const link = new Link({ name: 'slow', bitsPerSecond: 1e6, queueBytes: 8192, flowWindowBytes: 1 << 20 })
  t.teardown(() => { link.close() })
  const a = { src: new PassThrough(), dst: new PassThrough() }
  const b = { src: new PassThrough(), dst: new PassThrough() }
  link.pipe(a.src, a.dst)
  link.pipe(b.src, b.dst)
  const ra = collect(a.dst)
  const rb = collect(b.dst)
  const start = performance.now()
  a.src.end(Buffer.alloc(6250, 1))
  b.src.end(Buffer.alloc(6250, 2))
  t.true(a.src.isPaused() || b.src.isPaused(), 'the second sender is paused by the full queue')
  await Promise.all([ra.ended, rb.ended])
  const elapsed = performance.now() - start
  t.true(elapsed >= 100, `elapsed ${elapsed}`)
  t.is(link.stats().bytes, 12500)
  t.is(link.stats().inFlightBytes, 0)
})
