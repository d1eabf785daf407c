import test from 'ava'
import fc from 'fast-check'
import { encode as cborEncode } from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { Uint8ArrayList } from 'uint8arraylist'
import { pageCid } from '../../store/page.ts'
import { decodeAnswer, decodeOffer, encodeAnswer, encodeOffer } from '../../protocols/migrate/codec.ts'
import type { Offer } from '../../protocols/migrate/codec.ts'
import { InvalidMigrateMessageError } from '../../protocols/migrate/errors.ts'
import { MAX_NAME_LENGTH } from '../../protocols/migrate/constants.ts'

const cidArb = fc.uint8Array({ minLength: 1, maxLength: 64 }).map(b => pageCid(b))
const nameArb = fc.string({ minLength: 1, maxLength: MAX_NAME_LENGTH })
const offerArb: fc.Arbitrary<Offer> = fc.record({
  root: cidArb,
  name: fc.option(nameArb, { nil: undefined }),
  out: fc.option(nameArb, { nil: undefined }),
  round: fc.option(fc.nat(), { nil: undefined }),
  previous: fc.option(cidArb, { nil: undefined })
})

function decodesOrTyped (fn: () => unknown): boolean {
  try {
    fn()
    return true
  } catch (err) {
    return err instanceof InvalidMigrateMessageError && err.code === 'ERR_INVALID_MIGRATE_MESSAGE'
  }
}

function sameOffer (a: Offer, b: Offer): boolean {
  return a.root.equals(b.root) && a.name === b.name && a.out === b.out && a.round === b.round &&
    String(a.previous) === String(b.previous)
}

test('offer and answers round-trip, also from a chunk list', t => {
  fc.assert(fc.property(offerArb, offer => {
    const bytes = encodeOffer(offer)
    return sameOffer(decodeOffer(bytes), offer) && sameOffer(decodeOffer(new Uint8ArrayList(bytes.subarray(0, 2), bytes.subarray(2))), offer)
  }), { numRuns: 200 })
  t.deepEqual(decodeAnswer(encodeAnswer({ progress: { done: 1, total: 2 } })), { progress: { done: 1, total: 2 } })
  t.deepEqual(decodeAnswer(encodeAnswer({ report: { root: 'x' } })), { report: { root: 'x' } })
  t.deepEqual(decodeAnswer(encodeAnswer({ error: { code: 'ERR_X', message: 'no' } })), { error: { code: 'ERR_X', message: 'no' } })
})

test('decoders reject wrong shapes with ERR_INVALID_MIGRATE_MESSAGE', t => {
  const root = pageCid(new Uint8Array([1]))
  const badOffers: unknown[] = [null, 1, 'x', [], {}, { root: 'bafy' }, { root: root.bytes },
    { root, name: '' }, { root, name: 'x'.repeat(MAX_NAME_LENGTH + 1) }, { root, out: 5 },
    { root, round: -1 }, { root, round: 1.5 }, { root, round: 'one' }, { root, previous: 'x' }]
  for (const msg of badOffers) {
    t.throws(() => decodeOffer(cborEncode(msg)), { instanceOf: InvalidMigrateMessageError, code: 'ERR_INVALID_MIGRATE_MESSAGE' })
  }
  const badAnswers: unknown[] = [null, 1, 'x', [], {}, { error: 'x' }, { error: { code: 1, message: 'm' } }, { other: 1 }]
  for (const msg of badAnswers) {
    t.throws(() => decodeAnswer(cborEncode(msg)), { instanceOf: InvalidMigrateMessageError })
  }
  // a round beyond 2^53 arrives as a bigint
  t.throws(() => decodeOffer(cborEncode({ root, round: 2n ** 64n - 1n })), { instanceOf: InvalidMigrateMessageError })
  t.is(CID.asCID(decodeOffer(cborEncode({ root })).root)?.toString(), root.toString())
})

test('fuzz: random frames never crash the decoders', t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 4096 }), bytes => {
    return decodesOrTyped(() => decodeOffer(bytes)) && decodesOrTyped(() => decodeAnswer(bytes))
  }), { numRuns: 3000 })
  fc.assert(fc.property(fc.jsonValue(), value => {
    const bytes = cborEncode(value)
    return decodesOrTyped(() => decodeOffer(bytes)) && decodesOrTyped(() => decodeAnswer(bytes))
  }), { numRuns: 1000 })
  t.pass()
})

test('fuzz: mutated and truncated valid frames never crash the decoders', t => {
  fc.assert(fc.property(
    offerArb, fc.jsonValue(),
    fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat({ max: 8 }),
    (offer, progress, flips, cut) => {
      const o = encodeOffer(offer)
      const a = encodeAnswer({ progress: progress ?? 0 })
      const m1 = o.slice(0, Math.max(1, o.byteLength - cut))
      const m2 = a.slice(0, Math.max(1, a.byteLength - cut))
      for (const [at, value] of flips) {
        m1[at % m1.byteLength] = value
        m2[at % m2.byteLength] = value
      }
      return decodesOrTyped(() => decodeOffer(m1)) && decodesOrTyped(() => decodeAnswer(m2))
    }), { numRuns: 3000 })
  t.pass()
})

test('a deeply nested frame is a typed error, not a stack overflow', t => {
  const deep = new Uint8Array(100_000).fill(0x81)
  t.true(decodesOrTyped(() => decodeOffer(deep)))
  t.true(decodesOrTyped(() => decodeAnswer(deep)))
})
