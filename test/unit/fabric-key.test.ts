import test from 'ava'
import { createHost } from '../../node/libp2p.ts'
import { createFabricKey, parseFabricKey } from '../../node/fabric-key.ts'

test('hosts with the same fabric key connect; a host with another key cannot', async t => {
  const key = createFabricKey()
  const a = await createHost({ fabricKey: key })
  const b = await createHost({ fabricKey: key })
  const stranger = await createHost({ fabricKey: createFabricKey() })
  const open = await createHost()
  t.teardown(async () => { await Promise.all([a.stop(), b.stop(), stranger.stop(), open.stop()]) })

  const connection = await a.dial(b.getMultiaddrs()[0])
  t.true(connection.remotePeer.equals(b.peerId))
  await t.throwsAsync(stranger.dial(a.getMultiaddrs()[0], { signal: AbortSignal.timeout(15_000) }))
  await t.throwsAsync(open.dial(a.getMultiaddrs()[0], { signal: AbortSignal.timeout(15_000) }))
  t.false(a.getPeers().some(p => p.equals(stranger.peerId) || p.equals(open.peerId)))
})

test('a malformed key file is refused', t => {
  t.throws(() => parseFabricKey(new TextEncoder().encode('not a key'), 'x.key'), { code: 'ERR_FABRIC_KEY' } as any)
})
