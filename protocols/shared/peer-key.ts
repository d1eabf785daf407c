/**
 * The key counters and errors name a remote peer by.
 */
import { isPeerId } from '@libp2p/interface'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** The peer id string of `peer`: a multiaddr names it by its last `/p2p/` part, else by the whole address. */
export function peerKey (peer: PeerId | Multiaddr): string {
  if (isPeerId(peer)) {
    return peer.toString()
  }
  return peer.getComponents().findLast(c => c.name === 'p2p')?.value ?? peer.toString()
}
