import { serviceCapabilities } from '@libp2p/interface'
import type { AbortOptions, Connection, Logger, PeerId, Startable, Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import type { CID } from 'multiformats/cid'
import { verifyBlock } from '../../store/page.ts'
import { frameSignal } from '../shared/frame-timeout.ts'
import { handleProtocol } from '../shared/handle-protocol.ts'
import { protocolId } from '../shared/protocol-id.ts'
import { decodeRequest, decodeResponses, encodeRequest, encodeResponse, groupResponses } from './codec.ts'
import {
  DEFAULT_ZSTD_LEVEL, DEFAULT_MAX_INBOUND_STREAMS, DEFAULT_MAX_OUTBOUND_STREAMS, DEFAULT_TIMEOUT, MAX_CIDS_PER_REQUEST, MAX_FRAME_SIZE,
  PROTOCOL_NAME, PROTOCOL_PREFIX, PROTOCOL_VERSION
} from './constants.ts'
import { PeerMisbehavedError, PeerNotAllowedError } from './errors.ts'
import type { BlockExchangeComponents, BlockExchangeInit, BlockFetchOptions, BlockFetchResult } from './index.ts'

/** Serves manifest blocks by CID and fetches them verified. */
export class BlockExchange implements Startable {
  readonly protocol: string
  private readonly components: BlockExchangeComponents
  private readonly init: BlockExchangeInit
  private readonly log: Logger
  private readonly timeout: number
  private started = false

  constructor (components: BlockExchangeComponents, init: BlockExchangeInit) {
    this.components = components
    this.init = init
    this.protocol = protocolId(init.protocolPrefix ?? PROTOCOL_PREFIX, PROTOCOL_NAME, PROTOCOL_VERSION)
    this.timeout = init.timeout ?? DEFAULT_TIMEOUT
    this.log = components.logger.forComponent('memfabric:blocks')
  }

  readonly [Symbol.toStringTag] = 'memfabric/block-exchange'
  readonly [serviceCapabilities] = ['@memfabric/blocks']

  async start (): Promise<void> {
    await handleProtocol(this.components.registrar, this.protocol, async (stream, connection) => {
      if (this.init.allowPeer != null && !this.init.allowPeer(connection.remotePeer)) {
        this.log('peer %p is not on the allow-list, refusing its block stream', connection.remotePeer)
        stream.abort(new PeerNotAllowedError(`peer ${connection.remotePeer} may not fetch blocks`))
        return
      }
      await this.serve(stream, connection)
    }, (err, connection) => {
      this.log('serving %p failed - %e', connection.remotePeer, err)
    }, { maxInboundStreams: DEFAULT_MAX_INBOUND_STREAMS, maxOutboundStreams: DEFAULT_MAX_OUTBOUND_STREAMS })
    this.started = true
  }

  async stop (): Promise<void> {
    await this.components.registrar.unhandle(this.protocol)
    this.started = false
  }

  isStarted (): boolean {
    return this.started
  }

  /** Fetch blocks from a peer; each is verified before `onBlock`. A bad block throws. */
  async fetch (peer: PeerId, cids: CID[], options: BlockFetchOptions = {}): Promise<BlockFetchResult> {
    const result: BlockFetchResult = { received: [], missing: [], wireBytes: 0 }
    for (let i = 0; i < cids.length; i += MAX_CIDS_PER_REQUEST) {
      const batch = cids.slice(i, i + MAX_CIDS_PER_REQUEST)
      const stream = await this.components.connectionManager.openStream(peer, this.protocol, { signal: options.signal })
      try {
        const lp = lpStream(stream, { maxDataLength: MAX_FRAME_SIZE })
        const zstd = options.compress === true
        await lp.write(encodeRequest(zstd ? { cids: batch, zstd } : { cids: batch }), { signal: frameSignal(this.timeout, options.signal) })
        let next = 0
        while (next < batch.length) {
          const frame = await lp.read({ signal: frameSignal(this.timeout, options.signal) })
          result.wireBytes += frame.byteLength
          for (const { bytes } of decodeResponses(frame, zstd, batch.length - next)) {
            const cid = batch[next++]
            if (bytes == null) {
              result.missing.push(cid)
              continue
            }
            if (!verifyBlock(cid, bytes)) {
              throw new PeerMisbehavedError(peer.toString(), `sent a block that does not match ${cid}`)
            }
            result.received.push(cid)
            options.onBlock?.(cid, bytes)
          }
        }
        await stream.close({ signal: options.signal })
      } catch (err: any) {
        stream.abort(err)
        throw err
      }
    }
    return result
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: MAX_FRAME_SIZE })
    const { cids, zstd } = decodeRequest(await lp.read({ signal: AbortSignal.timeout(this.timeout) }))
    let frames: Uint8Array[] = []
    for (const cid of cids) {
      frames.push(encodeResponse({ bytes: await this.init.blocks.getBlock(cid) }))
    }
    if (zstd === true) frames = await groupResponses(frames, this.init.zstdLevel ?? DEFAULT_ZSTD_LEVEL)
    // one write: per-frame writes wait on the reader's window updates
    await lp.writeV(frames, { signal: AbortSignal.timeout(this.timeout) })
    await stream.close({ signal: AbortSignal.timeout(this.timeout) })
    this.log.trace('served %d blocks to %p', cids.length, connection.remotePeer)
  }
}
