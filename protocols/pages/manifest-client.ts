/**
 * Client side of the manifest requests: an image's thin manifest, and its patch against the
 * older image the peer uses as basis. Each is one request on a stream of its own.
 */
import { lpStream } from '@libp2p/utils'
import type { AbortOptions, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'
import type { Uint8ArrayList } from 'uint8arraylist'
import { frameSignal, readFrame } from '../shared/frame-timeout.ts'
import { misbehavedFor } from '../shared/misbehaved.ts'
import type { Misbehaved } from '../shared/misbehaved.ts'
import { peerKey } from '../shared/peer-key.ts'
import { wireLength } from '../shared/varint-length.ts'
import { decodePatchFrame, decodeThinFrame, encodePatchRequest, encodeThinRequest, THIN_ENTRY_BYTES } from './codec.ts'
import type { ManifestPatch, ThinManifest } from './codec.ts'
import { NotStartedError, TransferTimeoutError } from './errors.ts'
import type { ClientInit } from './client.ts'

export class ManifestClient {
  private readonly init: ClientInit

  constructor (init: ClientInit) {
    this.init = init
  }

  /** See `PageExchange.manifestThin`. */
  async manifestThin (peer: PeerId | Multiaddr, root: CID, options: AbortOptions & { maxEntries?: number } = {}): Promise<{ thin?: ThinManifest, wireBytes: number }> {
    const id = this.init.ids.take()
    const parts: Uint8Array[] = []
    let count = 0
    let absent = false
    const wireBytes = await this.exchange(peer, encodeThinRequest({ id, thin: root }), options, 'thin-manifest', decodeThinFrame, (part, misbehaved) => {
      if (part.id !== id || (part.absent && parts.length > 0)) {
        throw misbehaved('thin-manifest frames disagree')
      }
      absent = part.absent
      parts.push(part.entries)
      count += part.count
      if (count > (options.maxEntries ?? Infinity)) {
        throw misbehaved(`thin manifest holds more than ${options.maxEntries} entries`)
      }
      return part.last
    })
    if (absent) {
      return { wireBytes }
    }
    const entries = new Uint8Array(count * THIN_ENTRY_BYTES)
    let at = 0
    for (const part of parts) {
      entries.set(part, at)
      at += part.byteLength
    }
    return { thin: { entries, count }, wireBytes }
  }

  /** See `PageExchange.manifestPatch`. */
  async manifestPatch (peer: PeerId | Multiaddr, root: CID, options: AbortOptions = {}): Promise<{ patch?: ManifestPatch, wireBytes: number }> {
    const id = this.init.ids.take()
    let basis: CID | undefined
    const slots: number[] = []
    const kinds: number[] = []
    const digests: Uint8Array[] = []
    const wireBytes = await this.exchange(peer, encodePatchRequest({ id, patch: root }), options, 'manifest-patch', decodePatchFrame, (part, misbehaved) => {
      if (part.id !== id || (slots.length > 0 && (part.basis == null || !part.basis.equals(basis)))) {
        throw misbehaved('manifest-patch frames disagree')
      }
      basis ??= part.basis
      for (let i = 0; i < part.slots.length; i++) {
        if (slots.length > 0 && part.slots[i] <= slots[slots.length - 1]) throw misbehaved('manifest-patch slots do not ascend')
        slots.push(part.slots[i])
        kinds.push(part.kinds[i])
        digests.push(part.digests[i])
      }
      return part.last
    })
    if (basis == null) {
      return { wireBytes }
    }
    const flat = new Uint8Array(slots.length * 32)
    digests.forEach((d, i) => { if (d != null) flat.set(d, i * 32) })
    return { patch: { basis, slots: Uint32Array.from(slots), kinds: Uint8Array.from(kinds), digests: flat }, wireBytes }
  }

  /**
   * Send one request on a new stream, decode each response frame (`what` names it in errors)
   * and hand it to `onPart` until that returns true (the last frame). Returns the bytes read
   * off the stream.
   */
  private async exchange<T> (peer: PeerId | Multiaddr, request: Uint8Array, options: AbortOptions, what: string, decode: (frame: Uint8ArrayList) => T, onPart: (part: T, misbehaved: Misbehaved) => boolean): Promise<number> {
    if (!this.init.isStarted()) {
      throw new NotStartedError()
    }
    const { count, idleTimeout, streams } = this.init
    const remote = peerKey(peer)
    const shutdown = this.init.shutdown()
    const signal = AbortSignal.any(options.signal == null ? [shutdown] : [options.signal, shutdown])
    const stream = await this.init.connectionManager.openStream(peer, this.init.protocol, { signal })
    streams.add(stream)
    const misbehaved = misbehavedFor(remote, () => { count(remote, 'misbehaved', 1) })
    try {
      const lp = lpStream(stream, { maxDataLength: this.init.maxResponseFrameLength })
      await lp.write(request, { signal })
      let wireBytes = 0
      while (true) {
        let frame
        try {
          frame = await readFrame(lp, remote, idleTimeout, signal)
        } catch (err: any) {
          if (err instanceof TransferTimeoutError || signal.aborted) throw err
          throw misbehaved(`answer ended early: ${err.message}`, err)
        }
        wireBytes += wireLength(frame.byteLength)
        let part: T
        try {
          part = decode(frame)
        } catch (err: any) {
          throw misbehaved(`bad ${what} frame: ${err.message}`, err)
        }
        if (onPart(part, misbehaved)) break
      }
      await stream.close({ signal: frameSignal(idleTimeout, signal) })
      return wireBytes
    } catch (err: any) {
      stream.abort(err)
      throw err
    } finally {
      streams.delete(stream)
    }
  }
}
