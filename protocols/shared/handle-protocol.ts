/**
 * Registering a request/response protocol: each inbound stream is served on its own, and a
 * stream whose serving fails is reset with the error (the remote reads a reset).
 */
import type { AbortOptions, Connection, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'

/** What registering a protocol needs from libp2p. */
export interface ProtocolRegistrar {
  handle (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void>
  unhandle (protocol: string, options?: AbortOptions): Promise<void>
}

/** Register `serve` for `protocol`; `onError` is told of each stream that failed (after it was reset). */
export async function handleProtocol (
  registrar: ProtocolRegistrar,
  protocol: string,
  serve: (stream: Stream, connection: Connection) => Promise<void>,
  onError: (err: any, connection: Connection) => void,
  options: StreamHandlerOptions
): Promise<void> {
  await registrar.handle(protocol, (stream, connection) => {
    serve(stream, connection).catch(err => {
      onError(err, connection)
      stream.abort(err)
    })
  }, options)
}
