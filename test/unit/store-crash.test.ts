import test from 'ava'
import { spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ExecutionContext } from 'ava'
import { PAGE, seeded, tempDir } from './store-helpers.ts'
import { Repo } from '../../store/repo.ts'

const CHILD = new URL('./store-child.ts', import.meta.url).pathname

/** Run the child with `args`; SIGKILL it once a stdout line matches `killOn`. Resolves on exit. */
async function runAndKill (t: ExecutionContext, args: string[], killOn: (line: string) => boolean): Promise<{ killed: boolean, lines: string[] }> {
  const child = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const lines: string[] = []
  let killed = false
  let rest = ''
  child.stdout.on('data', (d: Buffer) => {
    rest += d.toString()
    const parts = rest.split('\n')
    rest = parts.pop() ?? ''
    for (const line of parts) {
      lines.push(line)
      if (!killed && killOn(line)) {
        killed = true
        child.kill('SIGKILL')
      }
    }
  })
  await new Promise(resolve => child.once('exit', resolve))
  return { killed, lines }
}

async function makeRepo (t: ExecutionContext): Promise<{ dir: string, tmp: string }> {
  const tmp = await tempDir(t)
  const dir = join(tmp, 'repo')
  await (await Repo.init(dir)).close()
  return { dir, tmp }
}

test('an import killed midway leaves a repository that opens, verifies, and keeps earlier images', async t => {
  const { dir, tmp } = await makeRepo(t)
  const early = Buffer.concat([seeded('early', PAGE * 300), Buffer.alloc(PAGE * 20)])
  await writeFile(join(tmp, 'early'), early)
  let repo = await Repo.open(dir)
  await repo.store.importImage(join(tmp, 'early'), { name: 'early' })
  await repo.close()

  const big = Buffer.concat([seeded('early', PAGE * 100), seeded('big', 32 * 1024 * 1024)])
  await writeFile(join(tmp, 'big'), big)
  const { killed, lines } = await runAndKill(t, ['import', dir, join(tmp, 'big')], line => {
    const m = /^progress (\d+)$/.exec(line)
    return m != null && Number(m[1]) >= 8 * 1024 * 1024
  })
  t.true(killed, `child output: ${lines.slice(-3).join(' | ')}`)
  t.false(lines.includes('done'))

  repo = await Repo.open(dir)
  t.teardown(async () => { await repo.close() })
  const v = await repo.store.verify({ deep: true })
  t.deepEqual(v.problems, [])
  t.true(v.ok)
  const list = await repo.store.list()
  t.deepEqual(list.map(i => i.names), [['early']])
  await t.throwsAsync(repo.store.resolve('killed'), { code: 'ERR_REF_NOT_FOUND' })
  await repo.store.exportImage('early', join(tmp, 'early.out'))
  t.true((await readFile(join(tmp, 'early.out'))).equals(early))
  // recovery dropped the interrupted import's pages and compacted its packs
  const stats = await repo.store.stats()
  t.is(stats.distinctPages, 300)
  t.is(stats.packBytes, stats.storedBytes)
  // and the repo takes new imports
  const res = await repo.store.importImage(join(tmp, 'big'), { name: 'big' })
  t.is(res.newPages, big.length / PAGE - 100)
  await repo.store.exportImage('big', join(tmp, 'big.out'))
  t.true((await readFile(join(tmp, 'big.out'))).equals(big))
})

test('a gc killed midway leaves a repository that opens, verifies, and loses nothing referenced', async t => {
  const { dir, tmp } = await makeRepo(t)
  const keep = seeded('keep', 12 * 1024 * 1024)
  const drop = seeded('drop', 12 * 1024 * 1024)
  await writeFile(join(tmp, 'keep'), keep)
  await writeFile(join(tmp, 'drop'), drop)
  let repo = await Repo.open(dir, { packSize: 4 * 1024 * 1024 })
  await repo.store.importImage(join(tmp, 'drop'), { name: 'drop' })
  await repo.store.importImage(join(tmp, 'keep'), { name: 'keep' })
  await repo.store.remove('drop')
  await repo.close()

  const { killed } = await runAndKill(t, ['gc', dir], line => line === 'removed')
  t.true(killed)

  repo = await Repo.open(dir)
  t.teardown(async () => { await repo.close() })
  const v = await repo.store.verify({ deep: true })
  t.deepEqual(v.problems, [])
  await repo.store.exportImage('keep', join(tmp, 'keep.out'))
  t.true((await readFile(join(tmp, 'keep.out'))).equals(keep))
  await repo.store.gc()
  const stats = await repo.store.stats()
  t.is(stats.distinctPages, keep.length / PAGE)
  t.is(stats.packBytes, stats.storedBytes)
  t.true((await repo.store.verify({ deep: true })).ok)
})
