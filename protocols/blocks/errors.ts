import { MemfabricError } from '../../store/errors.ts'

export class InvalidBlockMessageError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_INVALID_BLOCK_MESSAGE') }
}

/** A peer sent a block that does not hash to its CID, or broke the protocol. */
export class BlockVerificationError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_PEER_MISBEHAVED') }
}

/** (server side, sent as a stream reset) the peer is not on the node's allow-list. */
export class PeerNotAllowedError extends MemfabricError {
  constructor (message: string) { super(message, 'ERR_PEER_NOT_ALLOWED') }
}
