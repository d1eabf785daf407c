import test from 'ava'
import { createHost } from '../../node/libp2p.ts'
import { siteExchange } from '../../protocols/site/index.ts'
import type { SiteExchange } from '../../protocols/site/index.ts'
import { waitFor } from '../fixtures/wait.ts'

async function hostIn (site: string) {
  return createHost<{ site: SiteExchange }>({ services: { site: siteExchange({ site }) } })
}


test('peers learn each other\'s site and RTT after connecting', async t => {
  const a = await hostIn('paris')
  const b = await hostIn('berlin')
  t.teardown(async () => { await a.stop(); await b.stop() })
  await a.dial(b.getMultiaddrs()[0])
  const bSeenByA = await waitFor(() => a.services.site.get(b.peerId))
  const aSeenByB = await waitFor(() => b.services.site.get(a.peerId))
  t.is(bSeenByA.site, 'berlin')
  t.is(aSeenByB.site, 'paris')
  t.true((bSeenByA.rttMs ?? -1) >= 0)
})
