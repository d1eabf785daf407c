/**
 * Block exchange: manifest blocks (dag-cbor, up to 1 MiB) by CID, verified on arrival.
 * Pages travel on the page protocol; the few, larger manifest blocks travel here.
 *
 * @example
 * ```ts
 * const node = await createHost({ services: { blocks: blockExchange({ blocks: repo.store }) } })
 * await node.services.blocks.fetch(peerId, [root], { onBlock: (cid, bytes) => ... })
 * ```
 */
import type { AbortOptions, ComponentLogger, PeerId } from '@libp2p/interface'
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal'
import type { CID } from 'multiformats/cid'
import type { BlockStore } from '../../store/index.ts'
import { BlockExchange as BlockExchangeClass } from './block-exchange.ts'

export interface BlockExchangeInit {
  /** Where served blocks come from. */
  blocks: Pick<BlockStore, 'getBlock'>
  protocolPrefix?: string
  /** Idle time allowed between frames in ms (default DEFAULT_TIMEOUT). */
  timeout?: number
  /** zstd level of grouped answers for clients that ask for compression (default DEFAULT_ZSTD_LEVEL = 8). */
  zstdLevel?: number
  /** Serve only peers this accepts; others' streams are reset (ERR_PEER_NOT_ALLOWED). Default: every peer that can connect. */
  allowPeer?(peer: PeerId): boolean
}

export interface BlockExchangeComponents {
  registrar: Registrar
  connectionManager: ConnectionManager
  logger: ComponentLogger
}

export interface BlockFetchResult {
  received: CID[]
  missing: CID[]
  wireBytes: number
}

export interface BlockFetchOptions extends AbortOptions {
  /** Called with each block once verified. */
  onBlock?(cid: CID, bytes: Uint8Array): void
  /** Ask for answers grouped and zstd-compressed (for WAN links). */
  compress?: boolean
}

export interface BlockExchange {
  fetch (peer: PeerId, cids: CID[], options?: BlockFetchOptions): Promise<BlockFetchResult>
}

export function blockExchange (init: BlockExchangeInit): (components: BlockExchangeComponents) => BlockExchange {
  return (components) => new BlockExchangeClass(components, init)
}

export * from './constants.ts'
export * from './errors.ts'
