import test from 'ava'
import fc from 'fast-check'
import { encode as cborEncode } from '@ipld/dag-cbor'
import { Uint8ArrayList } from 'uint8arraylist'
import { pageCid } from '../../store/page.ts'
import { randomBytes } from 'node:crypto'
import { zstdCompressSync } from 'node:zlib'
import { decodeRequest, decodeResponse, decodeResponses, encodeRequest, encodeResponse, groupResponses } from '../../protocols/blocks/codec.ts'
import { InvalidBlockMessageError } from '../../protocols/blocks/errors.ts'
import { MAX_BLOCK_SIZE, MAX_CIDS_PER_REQUEST, MAX_FRAME_SIZE, MAX_GROUP_BYTES } from '../../protocols/blocks/constants.ts'

const cidArb = fc.uint8Array({ minLength: 1, maxLength: 64 }).map(b => pageCid(b))

/** True when `fn` decodes, or fails with the codec's typed error (never anything else). */
function decodesOrTyped (fn: () => unknown): boolean {
  try {
    fn()
    return true
  } catch (err) {
    return err instanceof InvalidBlockMessageError && err.code === 'ERR_INVALID_BLOCK_MESSAGE'
  }
}

test('request and response round-trip, also from a chunk list', t => {
  fc.assert(fc.property(fc.array(cidArb, { minLength: 1, maxLength: MAX_CIDS_PER_REQUEST }), fc.option(fc.uint8Array({ maxLength: 4096 })), (cids, bytes) => {
    const req = encodeRequest({ cids })
    t.deepEqual(decodeRequest(req).cids.map(String), cids.map(String))
    const split = new Uint8ArrayList(req.subarray(0, 3), req.subarray(3))
    t.deepEqual(decodeRequest(split).cids.map(String), cids.map(String))
    const res = decodeResponse(encodeResponse(bytes == null ? {} : { bytes }))
    t.deepEqual(res.bytes, bytes ?? undefined)
  }), { numRuns: 100 })
})

test('decoders reject wrong shapes with ERR_INVALID_BLOCK_MESSAGE', t => {
  const cid = pageCid(new Uint8Array([1]))
  const badRequests: unknown[] = [null, 1, 'x', [], {}, { cids: [] }, { cids: 'x' }, { cids: [1] },
    { cids: new Array(MAX_CIDS_PER_REQUEST + 1).fill(cid) }, { cids: [cid, 'bafy'] }]
  for (const msg of badRequests) {
    t.throws(() => decodeRequest(cborEncode(msg)), { instanceOf: InvalidBlockMessageError, code: 'ERR_INVALID_BLOCK_MESSAGE' })
  }
  const badResponses: unknown[] = [null, 1, 'x', { b: 'text' }, { b: [1, 2] }, { b: 7 }, { b: new Uint8Array(MAX_BLOCK_SIZE + 1) }]
  for (const msg of badResponses) {
    t.throws(() => decodeResponse(cborEncode(msg)), { instanceOf: InvalidBlockMessageError })
  }
  t.throws(() => decodeRequest(new Uint8Array(0)), { instanceOf: InvalidBlockMessageError })
  t.throws(() => decodeResponse(new Uint8Array([0xff])), { instanceOf: InvalidBlockMessageError })
})

test('fuzz: random frames never crash the decoders', t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 4096 }), bytes => {
    return decodesOrTyped(() => decodeRequest(bytes)) && decodesOrTyped(() => decodeResponse(bytes))
  }), { numRuns: 3000 })
  // arbitrary CBOR values: well-formed frames of the wrong shape
  fc.assert(fc.property(fc.jsonValue(), value => {
    const bytes = cborEncode(value)
    return decodesOrTyped(() => decodeRequest(bytes)) && decodesOrTyped(() => decodeResponse(bytes))
  }), { numRuns: 1000 })
  t.pass()
})

test('fuzz: mutated and truncated valid frames never crash the decoders', t => {
  fc.assert(fc.property(
    fc.array(cidArb, { minLength: 1, maxLength: 20 }), fc.uint8Array({ maxLength: 512 }),
    fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat({ max: 8 }),
    (cids, block, flips, cut) => {
      const req = encodeRequest({ cids })
      const res = encodeResponse({ bytes: block })
      const m1 = req.slice(0, Math.max(1, req.byteLength - cut))
      const m2 = res.slice(0, Math.max(1, res.byteLength - cut))
      for (const [at, value] of flips) {
        m1[at % m1.byteLength] = value
        m2[at % m2.byteLength] = value
      }
      return decodesOrTyped(() => decodeRequest(m1)) && decodesOrTyped(() => decodeResponse(m2))
    }), { numRuns: 3000 })
  t.pass()
})

test('a deeply nested frame is a typed error, not a stack overflow', t => {
  // 100k nested one-element arrays
  const deep = new Uint8Array(100_000).fill(0x81)
  t.true(decodesOrTyped(() => decodeRequest(deep)))
  t.true(decodesOrTyped(() => decodeResponse(deep)))
})

test('grouped answers decode to the answers, in order', async t => {
  const answers = [encodeResponse({ bytes: new Uint8Array(3000).fill(7) }), encodeResponse({}), encodeResponse({ bytes: new Uint8Array(3000).fill(7) })]
  const frames = await groupResponses(answers, 3)
  t.is(frames.length, 1)
  t.true(frames[0].byteLength < 1000)
  const out = decodeResponses(frames[0], true, 3)
  t.deepEqual(out.map(a => a.bytes?.byteLength), [3000, undefined, 3000])
})

test('a group frame is refused when not asked for, or when it holds more answers than asked', async t => {
  const answers = [encodeResponse({ bytes: new Uint8Array(3000) }), encodeResponse({ bytes: new Uint8Array(3000) })]
  const [frame] = await groupResponses(answers, 3)
  t.throws(() => decodeResponses(frame, false, 2), { instanceOf: InvalidBlockMessageError })
  t.throws(() => decodeResponses(frame, true, 1), { instanceOf: InvalidBlockMessageError })
})

test('a group frame that inflates past its cap is refused', t => {
  const bomb = cborEncode({ z: zstdCompressSync(Buffer.alloc(MAX_GROUP_BYTES + MAX_FRAME_SIZE + 1024)) })
  t.throws(() => decodeResponses(bomb, true, 64), { instanceOf: InvalidBlockMessageError, message: /cap/ })
})

test('incompressible answers stay plain frames', async t => {
  const answers = [encodeResponse({ bytes: randomBytes(4000) })]
  const frames = await groupResponses(answers, 3)
  t.deepEqual(frames, answers)
})
