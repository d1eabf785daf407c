import test from 'ava'
import net from 'node:net'
import { createHost } from '../../node/libp2p.ts'

test('a dial map sends the TCP connection through another address', async t => {
  const b = await createHost({ listen: ['/ip4/127.0.0.2/tcp/0'] })
  const target = b.getMultiaddrs()[0].getComponents()
  const targetPort = Number(target.find(c => c.name === 'tcp')?.value)
  let proxied = 0
  const proxy = net.createServer(socket => {
    const upstream = net.connect(targetPort, '127.0.0.2')
    socket.on('data', d => { proxied += d.byteLength })
    socket.pipe(upstream).pipe(socket)
    socket.on('error', () => upstream.destroy())
    upstream.on('error', () => socket.destroy())
  })
  await new Promise<void>(resolve => proxy.listen(0, '127.0.0.3', resolve))
  const proxyPort = (proxy.address() as net.AddressInfo).port
  const a = await createHost({ dialMap: { [`127.0.0.2:${targetPort}`]: `127.0.0.3:${proxyPort}` } })
  t.teardown(async () => {
    await a.stop(); await b.stop()
    await new Promise(resolve => proxy.close(resolve))
  })

  const connection = await a.dial(b.getMultiaddrs()[0])
  t.true(connection.remotePeer.equals(b.peerId))
  // libp2p keeps the peer's real address
  t.is(connection.remoteAddr.toString().split('/p2p/')[0], b.getMultiaddrs()[0].toString().split('/p2p/')[0])
  t.true(proxied > 0)
})
