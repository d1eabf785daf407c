/**
 * Manifest-patch response frames (server → client): how an image differs, slot by slot, from
 * the older image the server uses as its basis. One or more frames:
 *
 * ```
 * 0      u8   type = 0x02 (manifest patch)
 * 1      u8   flags: bit 0 = last frame; other bits zero
 * 2      u32  id of the request
 * 6      u16  length of the basis root CID (0: no basis, then no entries)
 * 8      the basis root CID's bytes
 * ..     u32  count of entries (at most PATCH_FRAME_ENTRIES)
 * ..     entries, each: u32 slot index (ascending over all frames) | u8 kind (0 zero page,
 *          1 page) followed, for a page, by its 32-byte sha2-256 digest
 * ```
 * A frame must be consumed exactly.
 */
import { CID } from 'multiformats/cid'
import type { Uint8ArrayList } from 'uint8arraylist'
import { InvalidMessageError } from '../errors.ts'
import { DIGEST_BYTES, FLAG_LAST, FRAME_PATCH, flat } from './frame.ts'

/** How an image differs from its basis: at `slots[i]`, a zero page (`kinds[i]` 0) or the page `digests[i]`. */
export interface ManifestPatch {
  basis: CID
  slots: Uint32Array
  kinds: Uint8Array
  /** 32 bytes per slot (unused for zero pages). */
  digests: Uint8Array
}

/** One decoded manifest-patch frame. */
export interface PatchFrame {
  id: number
  last: boolean
  /** Undefined: the server has no basis for the image. */
  basis?: CID
  slots: number[]
  kinds: number[]
  digests: Uint8Array[]
}

/** Entries per manifest-patch frame (about 600 KiB). */
export const PATCH_FRAME_ENTRIES = 16_384

/** The frames of a manifest patch (one frame with no basis when `patch` is undefined). */
export function encodePatchResponse (id: number, patch: ManifestPatch | undefined): Uint8Array[] {
  const basis = patch?.basis.bytes ?? new Uint8Array(0)
  const total = patch?.slots.length ?? 0
  const frames: Uint8Array[] = []
  for (let first = 0; first === 0 || first < total; first += PATCH_FRAME_ENTRIES) {
    const count = Math.min(PATCH_FRAME_ENTRIES, total - first)
    let length = 12 + basis.byteLength
    for (let i = first; i < first + count; i++) length += patch!.kinds[i] === 0 ? 5 : 5 + DIGEST_BYTES
    const out = Buffer.allocUnsafe(length)
    out[0] = FRAME_PATCH
    out[1] = first + count >= total ? FLAG_LAST : 0
    out.writeUInt32BE(id, 2)
    out.writeUInt16BE(basis.byteLength, 6)
    out.set(basis, 8)
    let at = 8 + basis.byteLength
    out.writeUInt32BE(count, at)
    at += 4
    for (let i = first; i < first + count; i++) {
      out.writeUInt32BE(patch!.slots[i], at)
      const kind = patch!.kinds[i] === 0 ? 0 : 1
      out[at + 4] = kind
      at += 5
      if (kind === 1) {
        out.set(patch!.digests.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES), at)
        at += DIGEST_BYTES
      }
    }
    frames.push(out)
  }
  return frames
}

/** One frame of a manifest patch. Throws InvalidMessageError. */
export function decodePatchFrame (data: Uint8Array | Uint8ArrayList): PatchFrame {
  const bytes = flat(data)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (bytes.byteLength < 12 || bytes[0] !== FRAME_PATCH || (bytes[1] & ~FLAG_LAST) !== 0) {
    throw new InvalidMessageError('not a manifest-patch frame')
  }
  const id = view.getUint32(2)
  const basisLength = view.getUint16(6)
  if (8 + basisLength + 4 > bytes.byteLength) {
    throw new InvalidMessageError('manifest-patch frame truncated')
  }
  let basis: CID | undefined
  if (basisLength > 0) {
    try {
      basis = CID.decode(bytes.slice(8, 8 + basisLength))
    } catch (err: any) {
      throw new InvalidMessageError(`manifest-patch basis is not a CID: ${err.message}`)
    }
  }
  let at = 8 + basisLength
  const count = view.getUint32(at)
  at += 4
  if (count > PATCH_FRAME_ENTRIES || (basis == null && count > 0)) {
    throw new InvalidMessageError(`manifest-patch frame holds ${count} entries`)
  }
  const slots: number[] = new Array(count)
  const kinds: number[] = new Array(count)
  const digests: Uint8Array[] = new Array(count)
  for (let i = 0; i < count; i++) {
    if (at + 5 > bytes.byteLength) throw new InvalidMessageError('manifest-patch frame truncated')
    slots[i] = view.getUint32(at)
    kinds[i] = bytes[at + 4]
    at += 5
    if (kinds[i] === 1) {
      if (at + DIGEST_BYTES > bytes.byteLength) throw new InvalidMessageError('manifest-patch frame truncated')
      digests[i] = bytes.slice(at, at + DIGEST_BYTES)
      at += DIGEST_BYTES
    } else if (kinds[i] !== 0) {
      throw new InvalidMessageError(`manifest-patch entry of unknown kind ${kinds[i]}`)
    }
  }
  if (at !== bytes.byteLength) {
    throw new InvalidMessageError(`manifest-patch frame has ${bytes.byteLength - at} trailing bytes`)
  }
  return { id, last: (bytes[1] & FLAG_LAST) !== 0, basis, slots, kinds, digests }
}
