import test from 'ava'
import fc from 'fast-check'
import { encode as cborEncode } from '@ipld/dag-cbor'
import { pageCid } from '../../store/page.ts'
import {
  decodeRequest, decodeResponse, encodeRequest, encodeResponse, fromBitmap, toBitmap
} from '../../protocols/presence/codec.ts'
import { InvalidMessageError } from '../../protocols/presence/errors.ts'

const cidArb = fc.uint8Array({ minLength: 1, maxLength: 64 }).map(b => pageCid(b))

function decodesOrTyped (fn: () => unknown): boolean {
  try {
    fn()
    return true
  } catch (err) {
    return err instanceof InvalidMessageError && (err as InvalidMessageError).code === 'ERR_INVALID_MESSAGE'
  }
}

test('bitmap round-trips, least significant bit first', t => {
  t.deepEqual([...toBitmap([true, false, false, false, false, false, false, false, false, true])], [1, 2])
  fc.assert(fc.property(fc.array(fc.boolean(), { maxLength: 1000 }), held => {
    t.deepEqual(fromBitmap(toBitmap(held), held.length), held)
  }), { numRuns: 100 })
})

test('request and response round-trip', t => {
  fc.assert(fc.property(fc.nat({ max: 0xffffffff }), fc.array(cidArb, { minLength: 1, maxLength: 100 }), (id, cids) => {
    const req = decodeRequest(encodeRequest({ id, cids }))
    t.is(req.id, id)
    t.deepEqual(req.cids.map(String), cids.map(String))
    const held = cids.map((_, i) => i % 3 === 0)
    const res = decodeResponse(encodeResponse(id, held))
    t.is(res.id, id)
    t.deepEqual(fromBitmap(res.bitmap, res.count), held)
  }), { numRuns: 50 })
})

test('decoders reject wrong shapes with ERR_INVALID_MESSAGE', t => {
  const cid = pageCid(new Uint8Array([1]))
  const badRequests: unknown[] = [null, [], { id: 1, cids: [] }, { id: 1, cids: new Array(16385).fill(cid) }, { id: 'a', cids: [cid] }, { id: 1, cids: [cid], x: 1 }]
  for (const msg of badRequests) {
    t.throws(() => decodeRequest(cborEncode(msg)), { instanceOf: InvalidMessageError })
  }
  const badResponses: unknown[] = [
    { id: 1, count: 0, bitmap: new Uint8Array(0) },
    { id: 1, count: 9, bitmap: new Uint8Array(1) },
    { id: 1, count: 3, bitmap: new Uint8Array([0b1000]) }, // padding bit set
    { id: 1, count: 16385, bitmap: new Uint8Array(2049) },
    { id: 1, count: 8, bitmap: [255] },
    { id: 1, count: 8, bitmap: new Uint8Array(1), more: 1 }
  ]
  for (const msg of badResponses) {
    t.throws(() => decodeResponse(cborEncode(msg)), { instanceOf: InvalidMessageError })
  }
})

test('fuzz: random and mutated frames never crash the decoders', t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), bytes => {
    return decodesOrTyped(() => decodeRequest(bytes)) && decodesOrTyped(() => decodeResponse(bytes))
  }), { numRuns: 3000 })
  fc.assert(fc.property(fc.array(cidArb, { minLength: 1, maxLength: 30 }), fc.nat(), fc.nat({ max: 255 }), fc.nat({ max: 4 }), (cids, at, value, cut) => {
    const req = encodeRequest({ id: 3, cids })
    const res = encodeResponse(3, cids.map((_, i) => i % 2 === 0))
    const m1 = req.slice(0, req.byteLength - cut)
    const m2 = res.slice(0, res.byteLength - cut)
    m1[at % m1.byteLength] = value
    m2[at % m2.byteLength] = value
    return decodesOrTyped(() => decodeRequest(m1)) && decodesOrTyped(() => decodeResponse(m2))
  }), { numRuns: 3000 })
  t.pass()
})
