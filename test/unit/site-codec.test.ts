import test from 'ava'
import fc from 'fast-check'
import { encode as cborEncode } from '@ipld/dag-cbor'
import { Uint8ArrayList } from 'uint8arraylist'
import { decodeHello, encodeHello } from '../../protocols/site/codec.ts'
import { InvalidSiteMessageError } from '../../protocols/site/errors.ts'
import { MAX_SITE_LENGTH } from '../../protocols/site/constants.ts'

function decodesOrTyped (fn: () => unknown): boolean {
  try {
    fn()
    return true
  } catch (err) {
    return err instanceof InvalidSiteMessageError && err.code === 'ERR_INVALID_SITE_MESSAGE'
  }
}

test('hello round-trips, also from a chunk list', t => {
  fc.assert(fc.property(fc.string({ minLength: 1, maxLength: MAX_SITE_LENGTH }), site => {
    const bytes = encodeHello({ site })
    return decodeHello(bytes).site === site && decodeHello(new Uint8ArrayList(bytes.subarray(0, 1), bytes.subarray(1))).site === site
  }), { numRuns: 300 })
  t.pass()
})

test('decoder rejects wrong shapes with ERR_INVALID_SITE_MESSAGE', t => {
  const bad: unknown[] = [null, 1, 'paris', [], {}, { site: '' }, { site: 1 }, { site: 'x'.repeat(MAX_SITE_LENGTH + 1) }, { site: ['paris'] }]
  for (const msg of bad) {
    t.throws(() => decodeHello(cborEncode(msg)), { instanceOf: InvalidSiteMessageError, code: 'ERR_INVALID_SITE_MESSAGE' })
  }
  t.throws(() => decodeHello(new Uint8Array(0)), { instanceOf: InvalidSiteMessageError })
})

test('fuzz: random, well-formed and mutated frames never crash the decoder', t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), bytes => decodesOrTyped(() => decodeHello(bytes))), { numRuns: 3000 })
  fc.assert(fc.property(fc.jsonValue(), value => decodesOrTyped(() => decodeHello(cborEncode(value)))), { numRuns: 1000 })
  fc.assert(fc.property(
    fc.string({ minLength: 1, maxLength: MAX_SITE_LENGTH }),
    fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat({ max: 4 }),
    (site, flips, cut) => {
      const hello = encodeHello({ site })
      const m = hello.slice(0, Math.max(1, hello.byteLength - cut))
      for (const [at, value] of flips) m[at % m.byteLength] = value
      return decodesOrTyped(() => decodeHello(m))
    }), { numRuns: 3000 })
  t.pass()
})

test('a deeply nested frame is a typed error, not a stack overflow', t => {
  t.true(decodesOrTyped(() => decodeHello(new Uint8Array(100_000).fill(0x81))))
})
