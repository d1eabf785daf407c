import test from 'ava'
import { createHost } from '../../node/libp2p.ts'

test('two hosts on loopback connect and ping', async t => {
  const a = await createHost()
  const b = await createHost()
  t.teardown(async () => { await a.stop(); await b.stop() })
  await a.dial(b.getMultiaddrs()[0])
  const rtt = await a.services.ping.ping(b.getMultiaddrs()[0])
  t.true(rtt >= 0)
  t.true(a.getPeers().some(p => p.equals(b.peerId)))
})
