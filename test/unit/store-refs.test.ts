import test from 'ava'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { PAGE, buildElfCore, page, seeded, tempDir, tempRepo } from './store-helpers.ts'
import { Repo, loadPrivateKey } from '../../store/repo.ts'

test('init writes a config with an Ed25519 identity; a second init fails; open of nothing fails', async t => {
  const tmp = await tempDir(t)
  const dir = join(tmp, 'r')
  const repo = await Repo.init(dir, { site: 'lab', bootstrap: ['/ip4/10.0.0.1/tcp/4001'] })
  t.teardown(async () => { await repo.close() })
  t.is(repo.config.site, 'lab')
  t.deepEqual(repo.config.addresses, { listen: ['/ip4/127.0.0.1/tcp/4001'], api: '/ip4/127.0.0.1/tcp/5001' })
  t.deepEqual(repo.config.bootstrap, ['/ip4/10.0.0.1/tcp/4001'])
  const key = loadPrivateKey(repo.config)
  t.is(key.type, 'Ed25519')
  t.true(repo.config.identity.peerId.startsWith('12D3KooW'))
  t.deepEqual(await Repo.readConfig(dir), repo.config)
  await t.throwsAsync(Repo.init(dir), { code: 'ERR_REPO_EXISTS' })
  // the lock is held by this process
  await t.throwsAsync(Repo.open(dir), { code: 'ERR_REPO_LOCKED', message: new RegExp(`in use by PID ${process.pid}`) })
  await t.throwsAsync(Repo.open(join(tmp, 'nothing')), { code: 'ERR_REPO_NOT_FOUND', message: /run `memfabric init`/ })
  await repo.saveConfig({ ...repo.config, site: 'other' })
  t.is((await Repo.readConfig(dir)).site, 'other')
  await repo.close()
  await repo.close() // idempotent
  const again = await Repo.open(dir)
  await again.close()
  t.pass()
})

test('names, pins, resolve, remove, list and inspect', async t => {
  const { repo, tmp } = await tempRepo(t)
  const s = repo.store
  const img = seeded('img', PAGE * 20)
  await writeFile(join(tmp, 'a'), img)
  const r1 = await s.importImage(join(tmp, 'a'), { name: 'vm1' })
  const r2 = await s.importImage(join(tmp, 'a'), { name: 'vm1@t2' })
  t.true(r1.root.equals(r2.root))
  t.is(r2.newPages, 0)
  t.true((await s.resolve('vm1')).equals(r1.root))
  t.true((await s.resolve(r1.root.toString())).equals(r1.root))
  t.true((await s.resolve(r1.root)).equals(r1.root))
  await t.throwsAsync(s.resolve('nope'), { code: 'ERR_REF_NOT_FOUND' })
  await t.throwsAsync(s.resolve('bad name!'), { code: 'ERR_INVALID_REF' })
  let list = await s.list()
  t.is(list.length, 1)
  t.deepEqual(list[0].names.sort(), ['vm1', 'vm1@t2'])
  t.true(list[0].complete)
  const info = await s.inspect('vm1@t2')
  t.is(info.size, img.length)
  t.is(info.distinctPages, 20)
  // a name may not be a CID or contain odd characters
  await t.throwsAsync(s.importImage(join(tmp, 'a'), { name: r1.root.toString() }), { code: 'ERR_INVALID_REF' })
  await t.throwsAsync(s.importImage(join(tmp, 'a'), { name: 'a/b' }), { code: 'ERR_INVALID_REF' })
  // importing under an existing name repoints it
  const other = seeded('other', PAGE * 3)
  await writeFile(join(tmp, 'b'), other)
  const r3 = await s.importImage(join(tmp, 'b'), { name: 'vm1' })
  t.true((await s.resolve('vm1')).equals(r3.root))
  // removing one of two names keeps the pin
  await s.pin(r1.root, { name: 'keep' })
  await s.remove('vm1@t2')
  t.is((await s.list()).length, 2)
  t.deepEqual((await s.inspect(r1.root)).names, ['keep'])
  // removing the last name removes the pin
  await s.remove('keep')
  t.is((await s.list()).length, 1)
  await s.pin(r1.root)
  // a CID removes the pin and all its names
  await s.pin(r3.root, { name: 'alias' })
  await s.remove(r3.root)
  await t.throwsAsync(s.resolve('vm1'), { code: 'ERR_REF_NOT_FOUND' })
  await t.throwsAsync(s.resolve('alias'), { code: 'ERR_REF_NOT_FOUND' })
  await t.throwsAsync(s.remove('vm1'), { code: 'ERR_REF_NOT_FOUND' })
  await t.throwsAsync(s.remove(r3.root), { code: 'ERR_REF_NOT_FOUND' })
  await s.remove(r1.root)
  list = await s.list()
  t.is(list.length, 0)
  // re-pinning blocks still present works, a complete pin needs every page
  await s.pin(r1.root, { name: 'back' })
  t.true((await s.inspect('back')).complete)
})

test('a complete pin needs every page; a partial pin does not', async t => {
  const { repo: src, tmp } = await tempRepo(t)
  const { repo: dst } = await tempRepo(t)
  const img = Buffer.concat([seeded('x', PAGE * 10), Buffer.alloc(PAGE * 2)])
  await writeFile(join(tmp, 'x'), img)
  const { root } = await src.store.importImage(join(tmp, 'x'))
  const m = await src.store.readManifest(root)
  for (const c of [root, ...m.chunks]) await dst.store.putBlock(c, await src.store.getBlock(c) as Uint8Array)
  await t.throwsAsync(dst.store.pin(root), { code: 'ERR_PAGE_NOT_FOUND', message: /image offset 0/ })
  await dst.store.pin(root, { name: 'incoming', partial: true })
  t.false((await dst.store.inspect('incoming')).complete)
  const slots = []
  for await (const s of src.store.pageSlots(root)) if (s.cid != null) slots.push(s.cid)
  const pages = []
  for await (const p of src.store.getMany(slots)) pages.push({ cid: p.cid, bytes: p.bytes as Uint8Array })
  // the partial pin protects what has arrived
  await dst.store.putMany(pages.slice(0, 5))
  t.is((await dst.store.gc()).removedPages, 0)
  await dst.store.putMany(pages.slice(5))
  await dst.store.pin(root, { name: 'incoming' })
  const info = await dst.store.inspect('incoming')
  t.true(info.complete)
  t.is(info.zeroPages, 2)
  await dst.store.exportImage('incoming', join(tmp, 'x.out'))
  t.true((await readFile(join(tmp, 'x.out'))).equals(img))
  t.true((await dst.store.verify({ deep: true })).ok)
})

test('bad input: a one-line error and nothing stored changes', async t => {
  const { repo, tmp } = await tempRepo(t)
  const s = repo.store
  await writeFile(join(tmp, 'good'), seeded('g', PAGE * 4))
  await s.importImage(join(tmp, 'good'), { name: 'good' })
  const before = { list: await s.list(), stats: await s.stats() }
  await mkdir(join(tmp, 'adir'))
  await writeFile(join(tmp, 'empty'), Buffer.alloc(0))
  const core = buildElfCore([{ offset: 0x1100, data: seeded('e', PAGE * 8) }])
  await writeFile(join(tmp, 'truncated.core'), core.subarray(0, core.length - 5000))
  await writeFile(join(tmp, 'tiny.core'), core.subarray(0, 40))
  await writeFile(join(tmp, 'noheaders.core'), core.subarray(0, 100))
  const exec = Buffer.from(core)
  exec.writeUInt16LE(2, 16) // ET_EXEC
  await writeFile(join(tmp, 'exec.elf'), exec)
  const cases: Array<[string, string, RegExp]> = [
    ['missing', 'ERR_INPUT_FILE', /no such file/],
    ['adir', 'ERR_INPUT_FILE', /is a directory/],
    ['empty', 'ERR_INPUT_FILE', /empty/],
    ['truncated.core', 'ERR_IMAGE_FORMAT', /truncated ELF core: PT_LOAD segment 1 ends at byte/],
    ['tiny.core', 'ERR_IMAGE_FORMAT', /truncated ELF file/],
    ['noheaders.core', 'ERR_IMAGE_FORMAT', /program headers/],
    ['exec.elf', 'ERR_IMAGE_FORMAT', /not a core file/]
  ]
  if (process.getuid?.() !== 0) {
    await writeFile(join(tmp, 'secret'), seeded('s', PAGE))
    await chmod(join(tmp, 'secret'), 0o000)
    cases.push(['secret', 'ERR_INPUT_FILE', /permission denied/])
  }
  for (const [file, code, message] of cases) {
    const err = await t.throwsAsync(s.importImage(join(tmp, file), { name: `n-${file.replace(/\W/g, '')}` }), { code, message })
    t.false(err?.message.includes('\n'), `${file}: multi-line message`)
  }
  await t.throwsAsync(s.exportImage('nope', join(tmp, 'o')), { code: 'ERR_REF_NOT_FOUND' })
  await t.throwsAsync(s.exportImage('good', join(tmp, 'no-such-dir', 'o')), { code: 'ERR_INPUT_FILE' })
  await t.throwsAsync(s.inspect('bad ref'), { code: 'ERR_INVALID_REF' })
  t.deepEqual(await s.list(), before.list)
  t.deepEqual(await s.stats(), before.stats)
  t.true((await s.verify()).ok)
})

test('a repository locked by another live process reports its PID', async t => {
  const { spawn } = await import('node:child_process')
  const tmp = await tempDir(t)
  const dir = join(tmp, 'r')
  await (await Repo.init(dir)).close()
  const child = spawn(process.execPath, [new URL('./store-child.ts', import.meta.url).pathname, 'hold', dir], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve() })
    child.on('exit', code => { reject(new Error(`child exited ${code}`)) })
  })
  await t.throwsAsync(Repo.open(dir), { code: 'ERR_REPO_LOCKED', message: `repository ${dir} is in use by PID ${child.pid}` })
  child.kill('SIGKILL')
  await new Promise(resolve => child.once('exit', resolve))
  // the stale lock of a dead process is taken over
  const repo = await Repo.open(dir)
  await repo.close()
  t.pass()
})

test('CID and unknown refs', async t => {
  const { repo } = await tempRepo(t)
  const cid = CID.parse('bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')
  await t.throwsAsync(repo.store.resolve(cid), { code: 'ERR_REF_NOT_FOUND' })
  await t.throwsAsync(repo.store.resolve(cid.toString()), { code: 'ERR_REF_NOT_FOUND' })
  await t.throwsAsync(repo.store.readManifest(cid), { code: 'ERR_BLOCK_NOT_FOUND' })
})

test('repointing a name drops the pin it held, unless another name or an explicit pin still holds the old root', async t => {
  const { repo, tmp } = await tempRepo(t)
  const s = repo.store
  await writeFile(join(tmp, 'a'), seeded('ra', PAGE * 8))
  await writeFile(join(tmp, 'b'), seeded('rb', PAGE * 5))
  await writeFile(join(tmp, 'c'), seeded('rc', PAGE * 3))
  const pinned = async (): Promise<string[]> => (await s.list()).map(i => i.root.toString()).sort()
  // held by the name alone: the old root loses its pin and gc frees its pages
  const a = (await s.importImage(join(tmp, 'a'), { name: 'vm1' })).root
  const b = (await s.importImage(join(tmp, 'b'), { name: 'vm1' })).root
  t.deepEqual(await pinned(), [b.toString()])
  t.is((await s.gc()).removedPages, 8)
  // another name still holds the old root
  const c = (await s.importImage(join(tmp, 'c'), { name: 'vm2' })).root
  await s.pin(c, { name: 'vm2-copy' })
  await s.importImage(join(tmp, 'b'), { name: 'vm2' })
  t.deepEqual((await s.inspect(c)).names, ['vm2-copy'])
  // an explicit (nameless) pin holds the root through repointing and removal of its names
  const a2 = (await s.importImage(join(tmp, 'a'))).root
  t.true(a2.equals(a))
  await s.pin(a, { name: 'vm3' })
  await s.pin(c, { name: 'vm3' })
  t.deepEqual((await s.inspect(a)).names, [])
  await s.pin(a, { name: 'vm4' })
  await s.remove('vm4')
  t.deepEqual(await pinned(), [a.toString(), b.toString(), c.toString()].sort())
  // the last name of a root pinned only through names takes the pin with it
  await s.remove('vm2-copy')
  t.deepEqual((await s.inspect(c)).names, ['vm3'])
  await s.remove('vm3')
  t.deepEqual(await pinned(), [a.toString(), b.toString()].sort())
  // a partial pin (pages in flight) is not explicit: completing it under a name, then moving the name, unpins it
  await s.pin(c, { partial: true })
  await s.pin(c, { name: 'pulled' })
  await s.pin(b, { name: 'pulled' })
  t.deepEqual(await pinned(), [a.toString(), b.toString()].sort())
  t.is((await s.gc()).removedPages, 3)
  t.true((await s.verify({ deep: true })).ok)
})
