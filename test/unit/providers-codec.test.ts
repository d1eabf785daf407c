import test from 'ava'
import fc from 'fast-check'
import * as dagCbor from '@ipld/dag-cbor'
import { decodeRequest, decodeResponse, encodeMessage, packKeys, unpackKeys } from '../../protocols/providers/codec.ts'
import { InvalidMessageError, MAX_KEYS_PER_MESSAGE, KEY_LENGTH, DIGEST_LENGTH, PROTOCOL, recordKey } from '../../protocols/providers/index.ts'

const key = (n: number): Uint8Array => new Uint8Array(KEY_LENGTH).fill(n)

test('requests and answers round-trip', t => {
  const keys = packKeys([key(1), key(2), key(3)])
  const add = decodeRequest(encodeMessage({ type: 'add', keys, ttl: 1000, addrs: [new Uint8Array([4, 127, 0, 0, 1])] }))
  t.is(add.type, 'add')
  t.is(add.keys.byteLength, 3 * 16)
  t.deepEqual(unpackKeys(add.keys).map(k => [k.byteLength, k[0]]), [[16, 1], [16, 2], [16, 3]])
  t.is(add.type === 'add' ? add.ttl : 0, 1000)
  const get = decodeRequest(encodeMessage({ type: 'get', keys }))
  t.is(get.type, 'get')
  const answer = decodeResponse(encodeMessage({ type: 'providers', peers: [new Uint8Array(38)], addrs: [[]], providers: [[0], [], [0]] }))
  t.deepEqual(answer.type === 'providers' ? answer.providers : [], [[0], [], [0]])
  t.deepEqual(decodeResponse(encodeMessage({ type: 'added', count: 3 })), { type: 'added', count: 3 })
})

test('a record key is the first 16 bytes of the page digest; 2.0.0 on the wire', t => {
  const digest = Uint8Array.from({ length: DIGEST_LENGTH }, (_, i) => i)
  const k = recordKey(digest)
  t.is(k.byteLength, 16)
  t.deepEqual([...k], [...digest.subarray(0, 16)])
  t.is(PROTOCOL, '/memfabric/providers/2.0.0')
  // a whole digest is not a key: packing one is a bug, not a silent truncation
  t.throws(() => packKeys([digest]), { instanceOf: RangeError })
})

test('a frame of 4096 keys is half the bytes it was with whole digests', t => {
  const keys = packKeys(Array.from({ length: MAX_KEYS_PER_MESSAGE }, (_, i) => key(i & 0xff)))
  const frame = encodeMessage({ type: 'add', keys, ttl: 86_400_000 })
  // 16 bytes per key plus a few dozen bytes of map framing per frame
  t.true(frame.byteLength - MAX_KEYS_PER_MESSAGE * KEY_LENGTH < 40, `${frame.byteLength} bytes`)
  t.is(decodeRequest(frame).keys.byteLength, MAX_KEYS_PER_MESSAGE * KEY_LENGTH)
})

test('invalid messages are rejected with InvalidMessageError', t => {
  const bad: unknown[] = [
    'x', 1, [], null, { type: 'nope' },
    { type: 'get' },
    { type: 'get', keys: new Uint8Array(KEY_LENGTH - 1) },
    { type: 'get', keys: new Uint8Array(KEY_LENGTH + 1) },
    { type: 'add', keys: new Uint8Array(DIGEST_LENGTH + 1) },
    { type: 'get', keys: new Uint8Array(0) },
    { type: 'get', keys: new Uint8Array(KEY_LENGTH * (MAX_KEYS_PER_MESSAGE + 1)) },
    { type: 'add', keys: new Uint8Array(KEY_LENGTH), ttl: -1 },
    { type: 'add', keys: new Uint8Array(KEY_LENGTH), ttl: 1.5 },
    { type: 'add', keys: new Uint8Array(KEY_LENGTH), addrs: [1] },
    { type: 'add', keys: [new Uint8Array(KEY_LENGTH)] }
  ]
  for (const value of bad) {
    const err = t.throws(() => decodeRequest(dagCbor.encode(value)))
    t.is((err as any)?.code, InvalidMessageError.code)
  }
  const badAnswers: unknown[] = [
    { type: 'added', count: -1 },
    { type: 'providers', peers: [], addrs: [], providers: [[0]] },
    { type: 'providers', peers: [new Uint8Array(38)], addrs: [], providers: [] },
    { type: 'providers', peers: [new Uint8Array(0)], addrs: [[]], providers: [] }
  ]
  for (const value of badAnswers) {
    const err = t.throws(() => decodeResponse(dagCbor.encode(value)))
    t.is((err as any)?.code, InvalidMessageError.code)
  }
})

test('fuzz: arbitrary bytes either decode to a valid message or throw InvalidMessageError', t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), bytes => {
    for (const decode of [decodeRequest, decodeResponse]) {
      try {
        decode(bytes)
      } catch (err: any) {
        if (err.code !== InvalidMessageError.code) throw err
      }
    }
  }), { numRuns: 3000 })
  t.pass()
})

test('fuzz: arbitrary dag-cbor values are validated, never trusted', t => {
  const value = fc.letrec(tie => ({
    leaf: fc.oneof(fc.integer(), fc.string(), fc.boolean(), fc.constant(null), fc.uint8Array({ maxLength: 96 }),
      fc.constantFrom('add', 'get', 'added', 'providers')),
    node: fc.oneof({ depthSize: 'small' }, tie('leaf'), fc.array(tie('node'), { maxLength: 4 }),
      fc.dictionary(fc.constantFrom('type', 'keys', 'ttl', 'addrs', 'count', 'peers', 'providers', 'x'), tie('node'), { maxKeys: 5 }))
  })).node
  fc.assert(fc.property(value, v => {
    let bytes: Uint8Array
    try { bytes = dagCbor.encode(v) } catch { return }
    for (const decode of [decodeRequest, decodeResponse]) {
      try {
        const m: any = decode(bytes)
        // whatever passes is well formed
        if (m.keys != null) t.true(m.keys.byteLength % KEY_LENGTH === 0 && m.keys.byteLength > 0)
      } catch (err: any) {
        if (err.code !== InvalidMessageError.code) throw err
      }
    }
  }), { numRuns: 3000 })
  t.pass()
})
