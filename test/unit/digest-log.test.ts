import test from 'ava'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { DigestLog } from '../../node/migration/digest-log.ts'

test('a digest log gives back every record appended, across writes, and removes its file on close', async t => {
  const log = await DigestLog.create()
  const digests = randomBytes(5000 * 32)
  for (let k = 0; k < 5000; k++) log.append(4999 - k, digests.subarray(k * 32, k * 32 + 32))
  const back = new Map<number, string>()
  await log.replay((k, digest) => { back.set(k, Buffer.from(digest).toString('hex')) })
  t.is(back.size, 5000)
  for (let k = 0; k < 5000; k++) t.is(back.get(4999 - k), digests.toString('hex', k * 32, k * 32 + 32))
  const dir = (log as any).dir as string
  t.true(existsSync(dir))
  await log.close()
  t.false(existsSync(dir))
})
