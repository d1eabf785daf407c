/**
 * Migration offers: the source tells the destination "pull this image from me"; the
 * destination pulls it through the fabric and answers with progress and a report.
 *
 * @example
 * ```ts
 * const report = await node.services.migrate.offer(destination, { root, name: 'vm1' }, { onProgress })
 * ```
 */
import type { AbortOptions, ComponentLogger, PeerId } from '@libp2p/interface'
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'
import { MigrateOffer as MigrateOfferClass } from './migrate-offer.ts'
import type { Offer } from './codec.ts'

export type { Offer }

export interface MigrateOfferInit {
  /** Runs on the destination for each accepted offer; returns the report sent back. */
  onOffer(offer: Offer, from: PeerId, options: AbortOptions & { onProgress(progress: unknown): void }): Promise<unknown>
  protocolPrefix?: string
  /** Source side: give up after this long without a frame (default DEFAULT_IDLE_TIMEOUT). */
  idleTimeout?: number
  /** Destination side: progress frames at most this often (default DEFAULT_PROGRESS_INTERVAL). */
  progressInterval?: number
}

export interface MigrateOfferComponents {
  registrar: Registrar
  connectionManager: ConnectionManager
  logger: ComponentLogger
}

export interface MigrateOffer {
  offer (peer: PeerId | Multiaddr, offer: Offer, options?: AbortOptions & { onProgress?(progress: any): void }): Promise<any>
}

export function migrateOffer (init: MigrateOfferInit): (components: MigrateOfferComponents) => MigrateOffer {
  return (components) => new MigrateOfferClass(components, init)
}

export * from './constants.ts'
export * from './errors.ts'
