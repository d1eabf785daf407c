import test from 'ava'
import fc from 'fast-check'
import { encode as cborEncode } from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { identity } from 'multiformats/hashes/identity'
import { Uint8ArrayList } from 'uint8arraylist'
import { PAGE_SIZE } from '../../store/constants.ts'
import { pageCid } from '../../store/page.ts'
import {
  decodeRequest, decodeResponse, encodeRequest, encodeResponse, PAGE_MISSING, PAGE_RAW, PAGE_DELTA
} from '../../protocols/pages/codec.ts'
import type { PageEntry } from '../../protocols/pages/codec.ts'
import { InvalidMessageError } from '../../protocols/pages/errors.ts'

const cidArb = fc.uint8Array({ minLength: 1, maxLength: 64 }).map(b => pageCid(b))
const entryArb: fc.Arbitrary<PageEntry> = fc.oneof(
  fc.constant({ kind: PAGE_MISSING, bytes: new Uint8Array(0) } as PageEntry),
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map(bytes => ({ kind: PAGE_RAW, bytes }) as PageEntry),
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map(bytes => ({ kind: PAGE_DELTA, bytes }) as PageEntry)
)

/** Decoding either succeeds or throws the typed error; nothing else. */
function decodesOrTyped (fn: () => unknown): boolean {
  try {
    fn()
    return true
  } catch (err) {
    return err instanceof InvalidMessageError && (err as InvalidMessageError).code === 'ERR_INVALID_MESSAGE'
  }
}

function mutate (bytes: Uint8Array, at: number, value: number, cut: number): Uint8Array {
  const copy = bytes.slice(0, Math.max(0, bytes.byteLength - cut))
  if (copy.byteLength > 0) {
    copy[at % copy.byteLength] = value
  }
  return copy
}

test('request round-trips', t => {
  fc.assert(fc.property(fc.nat({ max: 0xffffffff }), fc.array(cidArb, { minLength: 1, maxLength: 256 }), fc.boolean(), (id, cids, z) => {
    const req = decodeRequest(encodeRequest(z ? { id, cids, compress: 'zstd' } : { id, cids }))
    t.is(req.id, id)
    t.is(req.compress, z ? 'zstd' : undefined)
    t.deepEqual(req.cids.map(String), cids.map(String))
  }), { numRuns: 50 })
})

test('response round-trips', t => {
  fc.assert(fc.property(fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }), fc.boolean(), fc.array(entryArb, { maxLength: 50 }), (id, start, last, entries) => {
    const res = decodeResponse(encodeResponse({ id, start, last, entries }))
    t.is(res.id, id)
    t.is(res.start, start)
    t.is(res.last, last)
    t.deepEqual(res.entries.map(e => [e.kind, Buffer.from(e.bytes).toString('hex')]), entries.map(e => [e.kind, Buffer.from(e.bytes).toString('hex')]))
  }), { numRuns: 100 })
})

test('request decoder rejects wrong shapes with ERR_INVALID_MESSAGE', t => {
  const cid = pageCid(new Uint8Array([1]))
  const bad: unknown[] = [
    null, 1, 'x', [], new Uint8Array(3), cid,
    { id: -1, cids: [cid] }, { id: 1.5, cids: [cid] }, { id: 2 ** 32, cids: [cid] },
    { id: 1, cids: [] }, { id: 1, cids: new Array(257).fill(cid) }, { id: 1, cids: [cid.bytes] },
    { id: 1, cids: [CID.createV1(0x71, identity.digest(new Uint8Array([1])))] },
    { id: 1, cids: [CID.createV1(0x55, identity.digest(new Uint8Array(32)))] },
    { id: 1, cids: [cid], compress: 'gzip' }, { id: 1, cids: [cid], extra: true }
  ]
  for (const msg of bad) {
    const err = t.throws(() => decodeRequest(cborEncode(msg)), { instanceOf: InvalidMessageError })
    t.is((err as InvalidMessageError).code, 'ERR_INVALID_MESSAGE')
  }
})

test('response decoder rejects wrong shapes with ERR_INVALID_MESSAGE', t => {
  const ok = encodeResponse({ id: 1, start: 0, last: true, entries: [{ kind: PAGE_RAW, bytes: new Uint8Array(10) }] })
  const cases: Uint8Array[] = [
    new Uint8Array(0),
    ok.subarray(0, 13), // short header
    ok.subarray(0, ok.byteLength - 1), // truncated page
    Buffer.concat([ok, new Uint8Array(1)]), // trailing byte
    Buffer.from(ok).fill(0x02, 0, 1), // unknown type
    Buffer.from(ok).fill(0x80, 1, 2), // unknown flag
    Buffer.from(ok).fill(7, 14, 15), // unknown kind
    encodeResponse({ id: 1, start: 0, last: true, entries: [{ kind: PAGE_MISSING, bytes: new Uint8Array(1) }] }),
    encodeResponse({ id: 1, start: 0, last: true, entries: [{ kind: PAGE_RAW, bytes: new Uint8Array(0) }] }),
    encodeResponse({ id: 1, start: 0, last: true, entries: [{ kind: PAGE_RAW, bytes: new Uint8Array(PAGE_SIZE + 1) }] }),
    encodeResponse({ id: 1, start: 0, last: true, entries: new Array(257).fill({ kind: PAGE_MISSING, bytes: new Uint8Array(0) }) })
  ]
  for (const bytes of cases) {
    const err = t.throws(() => decodeResponse(bytes), { instanceOf: InvalidMessageError })
    t.is((err as InvalidMessageError).code, 'ERR_INVALID_MESSAGE')
  }
})

test('fuzz: random bytes never crash the decoders', t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), bytes => {
    return decodesOrTyped(() => decodeRequest(bytes)) && decodesOrTyped(() => decodeResponse(bytes))
  }), { numRuns: 3000 })
  t.pass()
})

test('fuzz: mutated valid frames never crash the decoders', t => {
  fc.assert(fc.property(
    fc.array(cidArb, { minLength: 1, maxLength: 20 }), fc.array(entryArb, { minLength: 1, maxLength: 20 }),
    fc.nat(), fc.nat({ max: 255 }), fc.nat({ max: 8 }),
    (cids, entries, at, value, cut) => {
      const req = mutate(encodeRequest({ id: 7, cids, compress: 'zstd' }), at, value, cut)
      const res = mutate(encodeResponse({ id: 7, start: 3, last: true, entries }), at, value, cut)
      return decodesOrTyped(() => decodeRequest(req)) && decodesOrTyped(() => decodeResponse(res))
    }
  ), { numRuns: 3000 })
  t.pass()
})

test('response decodes the same from a chunk list as from a flat frame (fuzzed split points)', t => {
  fc.assert(fc.property(fc.array(entryArb, { minLength: 1, maxLength: 30 }), fc.array(fc.nat(), { maxLength: 8 }), fc.nat(), fc.nat({ max: 255 }), (entries, cuts, at, value) => {
    const flat = encodeResponse({ id: 9, start: 1, last: false, entries })
    if (at % 3 === 0) {
      flat[at % flat.byteLength] = value // sometimes corrupt it too
    }
    const points = [...new Set(cuts.map(c => c % flat.byteLength))].sort((a, b) => a - b)
    const list = new Uint8ArrayList()
    let prev = 0
    for (const p of [...points, flat.byteLength]) {
      if (p > prev) { list.append(flat.subarray(prev, p)); prev = p }
    }
    let a: unknown, b: unknown
    try { a = decodeResponse(flat) } catch (err) { a = (err as any).code }
    try { b = decodeResponse(list) } catch (err) { b = (err as any).code }
    const norm = (x: any) => typeof x === 'string' ? x : { ...x, entries: x.entries.map((e: PageEntry) => [e.kind, Buffer.from(e.bytes).toString('hex')]) }
    t.deepEqual(norm(a), norm(b))
  }), { numRuns: 500 })
})
