import { access, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'
import { MIN_GUEST_RAM_BYTES, prepareGuestScenario } from '../../bench/guest-images.ts'
import type { GuestScenarioName } from '../../bench/guest-images.ts'

const MiB = 2 ** 20

test('guest RAM below the minimum, or not whole MiB, is refused up front with the minimum named', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-guest-images-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const images = join(dir, 'images')
  for (const sizeBytes of [64 * MiB, MIN_GUEST_RAM_BYTES - MiB, MIN_GUEST_RAM_BYTES + 4096]) {
    const err = await t.throwsAsync(prepareGuestScenario('guest-return', images, sizeBytes), { code: 'ERR_SCENARIO' })
    t.true(err?.message.includes(`at least ${MIN_GUEST_RAM_BYTES / MiB} MiB`), err?.message)
  }
  await t.throwsAsync(access(images), undefined, 'nothing is made')
})

test('an unknown guest scenario is refused', async t => {
  await t.throwsAsync(prepareGuestScenario('guest-nope' as GuestScenarioName, join(tmpdir(), 'memfabric-never'), MIN_GUEST_RAM_BYTES), { code: 'ERR_SCENARIO', message: /unknown guest scenario/ })
})
