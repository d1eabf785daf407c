import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { PAGE_SIZE } from '../../testnet/synthetic.ts'
import { planFromImages, prepareScenario } from '../../testnet/scenarios.ts'

async function tempDir (t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-scenarios-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

/** A page filled with `id` (0: the zero page) */
function page (id: number): Buffer {
  return Buffer.alloc(PAGE_SIZE, id)
}

/** An image file of the given pages */
async function image (dir: string, name: string, pages: number[]): Promise<{ path: string, name: string }> {
  const path = join(dir, `${name}.mem`)
  await writeFile(path, Buffer.concat(pages.map(page)))
  return { path, name }
}

test('a plan from image files keeps the given roles and takes its size from the source', async t => {
  const dir = await tempDir(t)
  const vm = await image(dir, 'vm', [1, 2, 3, 0])
  const older = await image(dir, 'older', [1, 2, 9, 0])
  const plan = await planFromImages({
    scenario: 'guest-return',
    description: 'a real VM goes back',
    source: vm,
    siteB: [{ ...older, host: 1 }],
    sourceAlso: [older],
    destHost: 3
  })
  t.is(plan.scenario, 'guest-return')
  t.is(plan.description, 'a real VM goes back')
  t.is(plan.sizeBytes, 4 * PAGE_SIZE)
  t.deepEqual(plan.source, vm)
  t.deepEqual(plan.siteB, [{ ...older, host: 1 }])
  t.deepEqual(plan.sourceAlso, [older])
  t.is(plan.destHost, 3)
  t.deepEqual(plan.closest, { ...older, host: 1 }, 'the only site-B image is the closest')
})

test('without a closest image, the plan picks the site-B image holding most of the source\'s distinct non-zero pages', async t => {
  const dir = await tempDir(t)
  const vm = await image(dir, 'vm', [1, 2, 3, 4, 0, 0])
  // far shares 1 page but many zero pages; near shares 3 pages at other offsets
  const far = await image(dir, 'far', [1, 0, 0, 0, 0, 0])
  const near = await image(dir, 'near', [9, 4, 3, 2, 8, 7])
  const plan = await planFromImages({ scenario: 'x', description: 'x', source: vm, siteB: [{ ...far, host: 1 }, { ...near, host: 2 }], destHost: 3 })
  t.is(plan.closest?.name, 'near')
  t.deepEqual(plan.sourceAlso, [])
  const given = await planFromImages({ scenario: 'x', description: 'x', source: vm, siteB: [{ ...far, host: 1 }, { ...near, host: 2 }], destHost: 3, closest: far })
  t.is(given.closest?.name, 'far', 'a closest image given is kept')
})

test('a plan from image files refuses images it cannot use', async t => {
  const dir = await tempDir(t)
  const vm = await image(dir, 'vm', [1, 2])
  const other = await image(dir, 'other', [1, 2, 3])
  const ragged = { path: join(dir, 'ragged.mem'), name: 'ragged' }
  await writeFile(ragged.path, Buffer.alloc(PAGE_SIZE + 1, 1))
  const base = { scenario: 'x', description: 'x', destHost: 2 }
  const code = { code: 'ERR_SCENARIO' }
  await t.throwsAsync(planFromImages({ ...base, source: vm, siteB: [{ ...other, host: 1 }] }), { ...code, message: /other is 12288 bytes/ })
  await t.throwsAsync(planFromImages({ ...base, source: ragged, siteB: [{ ...vm, host: 1 }] }), { ...code, message: /multiple of 4096/ })
  await t.throwsAsync(planFromImages({ ...base, source: vm, siteB: [] }), { ...code, message: /site B holds no image/ })
  await t.throwsAsync(planFromImages({ ...base, source: vm, siteB: [{ ...vm, host: 0 }] }), { ...code, message: /host must be a positive integer/ })
  await t.throwsAsync(planFromImages({ ...base, source: { path: join(dir, 'missing.mem'), name: 'missing' }, siteB: [{ ...vm, host: 1 }] }), { ...code, message: /cannot read/ })
  await t.throwsAsync(planFromImages({ ...base, destHost: 0, source: vm, siteB: [{ ...vm, host: 1 }] }), { ...code, message: /destination host/ })
})

test('the synthetic scenarios still plan as before: siblings on the holders, the first one closest', async t => {
  const dir = await tempDir(t)
  const family = await prepareScenario('family', dir, 64 * PAGE_SIZE, 3)
  t.is(family.scenario, 'family')
  t.is(family.sizeBytes, 64 * PAGE_SIZE)
  t.deepEqual(family.siteB.map(i => [i.name, i.host]), [['sibling1', 1], ['sibling2', 2]])
  t.is(family.destHost, 3)
  t.is(family.closest?.name, 'sibling1')
  t.deepEqual(family.sourceAlso, [])
  const back = await prepareScenario('return', dir, 64 * PAGE_SIZE, 1)
  t.deepEqual(back.siteB.map(i => [i.name, i.host]), [['vm1@t1', 1]])
  t.deepEqual(back.sourceAlso.map(i => i.name), ['vm1@t1'])
  t.is(back.destHost, 1)
  t.is(back.closest?.name, 'vm1@t1')
})
