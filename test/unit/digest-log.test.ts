import test from 'ava'
import { randomBytes } from 'node:crypto'
import { readlink } from 'node:fs/promises'
import { DigestLog } from '../../node/migration/digest-log.ts'

test('a digest log gives back every record appended, across writes, from a file no directory holds', async t => {
  const log = await DigestLog.create()
  // unlinked at once: a process killed mid-pull leaves nothing in the temp directory
  const fd = (log as any).file.fd as number
  t.regex(await readlink(`/proc/self/fd/${fd}`), / \(deleted\)$/)
  const digests = randomBytes(5000 * 32)
  for (let k = 0; k < 5000; k++) log.append(4999 - k, digests.subarray(k * 32, k * 32 + 32))
  const back = new Map<number, string>()
  await log.replay((k, digest) => { back.set(k, Buffer.from(digest).toString('hex')) })
  t.is(back.size, 5000)
  for (let k = 0; k < 5000; k++) t.is(back.get(4999 - k), digests.toString('hex', k * 32, k * 32 + 32))
  await log.close()
})
