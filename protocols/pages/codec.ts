/**
 * What goes over the wire of `/memfabric/pages/1.0.0`. Every frame is length-prefixed
 * (unsigned varint, `lpStream`); one file documents and codes each kind of frame:
 *
 * | frame | direction | encoding | file |
 * |---|---|---|---|
 * | page, manifest-patch, prefix and thin-manifest requests | client → server | dag-cbor map | codec/requests.ts |
 * | pages (type 0x01), optionally zstd | server → client | fixed binary | codec/page-frames.ts |
 * | manifest patch (type 0x02) | server → client | fixed binary | codec/patch-frames.ts |
 * | thin manifest (type 0x03) | server → client | fixed binary | codec/thin-frames.ts |
 * | held prefixes (type 0x04) | server → client | fixed binary | codec/held-frames.ts |
 *
 * Every answer frame opens with a type byte, a flags byte (bit 0: the last frame of its
 * request) and the u32 id of its request (codec/frame.ts); integers are big-endian.
 */
export * from './codec/frame.ts'
export * from './codec/requests.ts'
export * from './codec/page-frames.ts'
export * from './codec/patch-frames.ts'
export * from './codec/thin-frames.ts'
export * from './codec/held-frames.ts'
