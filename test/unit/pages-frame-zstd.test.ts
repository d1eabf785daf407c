import test from 'ava'
import { zstdCompressSync } from 'node:zlib'
import { decodeResponse, deflateResponse, encodeResponse, FLAG_ZSTD, PAGE_RAW } from '../../protocols/pages/codec.ts'
import { RESPONSE_FRAME_HEADER } from '../../protocols/pages/constants.ts'

const page = (fill: number): Uint8Array => new Uint8Array(4096).fill(fill).map((v, i) => (i % 64 === 0 ? i & 0xff : v))

test('a frame compressed as a whole decodes to the same entries and is much smaller', async t => {
  const entries = Array.from({ length: 64 }, (_, i) => ({ kind: PAGE_RAW as typeof PAGE_RAW, bytes: page(i % 4) }))
  const plain = encodeResponse({ id: 7, start: 0, last: true, entries })
  const compressed = await deflateResponse(plain, 3, 0.97)
  t.truthy(compressed)
  t.true(compressed!.byteLength < plain.byteLength / 20)
  t.is(compressed![1] & FLAG_ZSTD, FLAG_ZSTD)
  const decoded = decodeResponse(compressed!)
  t.is(decoded.id, 7)
  t.true(decoded.last)
  t.deepEqual(decoded.entries.map(e => Buffer.from(e.bytes)), entries.map(e => Buffer.from(e.bytes)))
})

test('incompressible frames are not sent compressed', async t => {
  const entries = [{ kind: PAGE_RAW as typeof PAGE_RAW, bytes: crypto.getRandomValues(new Uint8Array(4096)) }]
  t.is(await deflateResponse(encodeResponse({ id: 1, start: 0, last: true, entries }), 3, 0.97), undefined)
})

test('a compressed frame that inflates past the cap is refused', t => {
  const header = Buffer.alloc(RESPONSE_FRAME_HEADER)
  header[0] = 0x01
  header[1] = FLAG_ZSTD
  header.writeUInt32BE(1, 10)
  const bomb = Buffer.concat([header, zstdCompressSync(Buffer.alloc(64 * 1024 * 1024))])
  t.throws(() => decodeResponse(bomb, 4), { code: 'ERR_INVALID_MESSAGE' } as any)
})
