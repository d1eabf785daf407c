import test from 'ava'
import type { ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import { chmod, mkdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cli, childEnv, makeImage, ok, PAGE, tempDir, tempRepo, waitFor, writeTemp } from './cli-helpers.ts'

const REPO_MODULE = fileURLToPath(new URL('../../store/repo.ts', import.meta.url))

/** stderr is exactly one line starting with the error prefix. */
function oneLineError (t: any, stderr: string, what: string): void {
  t.regex(stderr, /^memfabric: error: \S/, what)
  t.is(stderr.trimEnd().split('\n').length, 1, `${what}: ${stderr}`)
}

// serial: each test spawns several CLI processes; side by side they only starve each other
test.serial('init → import → ls → inspect → export byte-identical → stats → id', async t => {
  const dir = await tempDir(t)
  const repo = join(dir, 'repo')
  const r = ['--repo', repo]

  const id = await ok(t, ['init', ...r, '--site', 'fra1', '--json'])
  t.regex(id.peerId, /^12D3Koo/)
  t.is(id.site, 'fra1')

  // 64 full pages (16 zero, 16 identical, 32 unique) and an odd 1234-byte tail
  const a = makeImage(64, 1234)
  const fileA = await writeTemp(dir, 'a.ram', a.bytes)
  const impA = await ok(t, ['import', fileA, '--name', 'vm1', '--json', ...r])
  t.like(impA, { size: a.bytes.length, pages: 65, zeroPages: a.zeroPages, newPages: a.distinctPages, format: 'raw' })
  t.regex(impA.root, /^b/)

  const list = await ok(t, ['ls', '--json', ...r])
  t.is(list.length, 1)
  t.like(list[0], { root: impA.root, names: ['vm1'], size: a.bytes.length, pages: 65, zeroPages: 16, complete: true })

  const human = await ok(t, ['inspect', 'vm1', ...r])
  t.true(human.includes(impA.root))
  t.regex(human, /size: +257 KiB \(263,378 bytes\)/)
  const details = await ok(t, ['inspect', impA.root, '--json', ...r])
  t.like(details, { root: impA.root, pageSize: PAGE, distinctPages: a.distinctPages })

  const outA = join(dir, 'a.out')
  await ok(t, ['export', 'vm1', '--out', outA, ...r])
  t.true((await readFile(outA)).equals(a.bytes), 'export is byte-identical')

  const s1 = await ok(t, ['stats', '--json', ...r])
  t.like(s1, { images: 1, logicalBytes: a.bytes.length, zeroPages: 16, distinctPages: a.distinctPages })
  t.true(s1.dedupRatio > 1)

  // id offline: identity from config, no addresses; peers needs a daemon
  const who = await ok(t, ['id', '--json', ...r])
  t.deepEqual(who, { peerId: id.peerId, site: 'fra1', addresses: [] })
  const peers = await cli(['peers', ...r])
  t.is(peers.code, 1)
  t.regex(peers.stderr, /no daemon is running on repository .*; start one with `memfabric daemon`/)
})

test.serial('second image dedups → rm → gc frees → verify ok → survivor exports byte-identical', async t => {
  const repo = await tempRepo(t)
  const dir = await tempDir(t)
  const r = ['--repo', repo]
  const a = makeImage(64, 1234)
  const impA = await ok(t, ['import', await writeTemp(dir, 'a.ram', a.bytes), '--name', 'vm1', '--json', ...r])
  t.is(impA.newPages, a.distinctPages)

  // a second image sharing all but three unique pages: only those are new
  const b = Buffer.from(a.bytes)
  for (const i of [2, 3, 6]) {
    b.fill(0xa0 + i, i * PAGE, (i + 1) * PAGE)
  }
  const fileB = await writeTemp(dir, 'b.ram', b)
  const impB = await ok(t, ['import', fileB, '--name', 'vm2', '--json', ...r])
  t.is(impB.newPages, 3)
  t.not(impB.root, impA.root)

  const s2 = await ok(t, ['stats', '--json', ...r])
  t.is(s2.images, 2)
  t.is(s2.distinctPages, a.distinctPages + 3)

  const rmOut = await ok(t, ['rm', 'vm1', ...r])
  t.regex(rmOut, /^removed vm1/)
  t.deepEqual((await ok(t, ['ls', '--json', ...r])).map((i: any) => i.names), [['vm2']])

  const gc = await ok(t, ['gc', '--json', ...r])
  t.is(gc.removedPages, 3, 'the three pages only vm1 used are freed')
  const s3 = await ok(t, ['stats', '--json', ...r])
  t.is(s3.distinctPages, a.distinctPages)
  t.true(s3.storedBytes < s2.storedBytes)

  const verify = await ok(t, ['verify', ...r])
  t.regex(verify, /^ok: 1 image, /)
  const deep = await ok(t, ['verify', '--deep', '--json', ...r])
  t.true(deep.ok)

  const outB = join(dir, 'b.out')
  await ok(t, ['export', impB.root, '--out', outB, ...r])
  t.true((await readFile(outB)).equals(b), 'vm2 survives gc byte-identical')
})

test.serial('MEMFABRIC_REPO selects the repository', async t => {
  const dir = await tempDir(t)
  const repo = join(dir, 'envrepo')
  const init = await cli(['init', '--json'], { env: { MEMFABRIC_REPO: repo } })
  t.is(init.code, 0, init.stderr)
  t.true((await stat(join(repo, 'config.json'))).isFile())
  const ls = await cli(['ls', '--json'], { env: { MEMFABRIC_REPO: repo } })
  t.deepEqual(JSON.parse(ls.stdout), [])
})

/** A repo with one image, and a check that its images and stats are unchanged at the end. */
async function repoWithImage (t: ExecutionContext): Promise<{ repo: string, dir: string, r: string[], unchanged: () => Promise<void> }> {
  const repo = await tempRepo(t)
  const dir = await tempDir(t)
  const r = ['--repo', repo]
  await ok(t, ['import', await writeTemp(dir, 'good.ram', makeImage(8, 0).bytes), '--name', 'good', ...r])
  const before = await ok(t, ['ls', '--json', ...r])
  const statsBefore = await ok(t, ['stats', '--json', ...r])
  return {
    repo,
    dir,
    r,
    // called at the end of the test: nothing stored changed
    async unchanged () {
      t.deepEqual(await ok(t, ['ls', '--json', ...r]), before)
      t.deepEqual(await ok(t, ['stats', '--json', ...r]), statsBefore)
      t.regex(await ok(t, ['verify', ...r]), /^ok/)
    }
  }
}

type BadCase = [string, string[], number, RegExp]

/** Each case (run one after the other: they share the repo lock) fails with one line. */
async function expectFailures (t: ExecutionContext, cases: BadCase[], r: string[]): Promise<void> {
  for (const [what, args, code, message] of cases) {
    const res = await cli([...args, ...r])
    t.is(res.code, code, `${what}: ${res.stderr}`)
    oneLineError(t, res.stderr, what)
    t.regex(res.stderr, message, what)
    t.is(res.stdout, '', what)
  }
}

test.serial('bad input files: one-line errors, non-zero exit, stored images unchanged', async t => {
  const { dir, r, unchanged } = await repoWithImage(t)
  const empty = await writeTemp(dir, 'empty.ram', '')
  const sub = join(dir, 'a-directory')
  await mkdir(sub)
  // an ELF core header whose PT_LOAD segment runs past the end of the file
  const elf = Buffer.alloc(64 + 56)
  elf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0)
  elf.writeUInt16LE(4, 16) // ET_CORE
  elf.writeUInt16LE(62, 18) // x86-64
  elf.writeUInt32LE(1, 20)
  elf.writeBigUInt64LE(64n, 32) // e_phoff
  elf.writeUInt16LE(64, 52) // e_ehsize
  elf.writeUInt16LE(56, 54) // e_phentsize
  elf.writeUInt16LE(1, 56) // e_phnum
  elf.writeUInt32LE(1, 64) // PT_LOAD
  elf.writeBigUInt64LE(4096n, 64 + 8) // p_offset
  elf.writeBigUInt64LE(65536n, 64 + 32) // p_filesz
  elf.writeBigUInt64LE(65536n, 64 + 40) // p_memsz
  const truncatedElf = await writeTemp(dir, 'core.truncated', elf)
  const shortElf = await writeTemp(dir, 'core.short', elf.subarray(0, 20))

  await expectFailures(t, [
    ['missing file', ['import', join(dir, 'nope.ram')], 1, /nope\.ram/],
    ['empty file', ['import', empty], 1, /empty/],
    ['directory', ['import', sub], 1, /directory/],
    ['truncated ELF', ['import', truncatedElf, '--name', 'bad'], 1, /truncated ELF/],
    ['ELF shorter than its header', ['import', shortElf], 1, /truncated ELF/]
  ], r)

  if (process.getuid?.() === 0) {
    t.log('running as root: unreadable-file case skipped (root reads any file)')
  } else {
    const unreadable = await writeTemp(dir, 'unreadable.ram', makeImage(2, 0).bytes)
    await chmod(unreadable, 0)
    await expectFailures(t, [['unreadable file', ['import', unreadable], 1, /unreadable\.ram/]], r)
  }
  await unchanged()
})

test.serial('unknown and malformed refs: one-line errors, stored images unchanged', async t => {
  const { dir, r, unchanged } = await repoWithImage(t)
  await expectFailures(t, [
    ['unknown REF (export)', ['export', 'nope', '--out', join(dir, 'x.out')], 1, /nope/],
    ['unknown REF (inspect)', ['inspect', 'nope'], 1, /nope/],
    ['unknown REF (rm)', ['rm', 'nope'], 1, /nope/],
    ['unknown root CID', ['rm', 'bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'], 1, /bafyrei/],
    ['malformed ref', ['inspect', 'bad/ref!'], 1, /bad\/ref!/],
    ['malformed CID (providers)', ['providers', 'bafyNOTACID'], 1, /malformed CID/],
    ['init on an existing repo', ['init'], 1, /already exists/]
  ], r)
  await unchanged()
})

test.serial('wrong flags and commands exit 2 with one line and touch nothing', async t => {
  const r = ['--repo', join(await tempDir(t), 'never-created')]
  const cases: BadCase[] = [
    ['unknown flag', ['import', 'x.ram', '--bogus'], 2, /unknown option '--bogus'/],
    ['missing --out', ['export', 'good'], 2, /--out/],
    ['missing argument', ['inspect'], 2, /missing argument REF/],
    ['flag without value', ['import', 'x.ram', '--name'], 2, /'--name' needs a value/],
    ['unknown command', ['frobnicate'], 2, /unknown command/],
    ['bad multiaddr', ['init', '--listen', 'nope'], 2, /invalid multiaddr/]
  ]
  // none of these opens the repository, so they may run side by side
  await Promise.all(cases.map(async c => { await expectFailures(t, [c], r) }))
  const missing = await cli(['ls', ...r])
  t.is(missing.code, 1)
  oneLineError(t, missing.stderr, 'no repository')
  t.regex(missing.stderr, /memfabric init/)
})

test.serial('a repository locked by another process: error names the PID, nothing changes', async t => {
  const repo = await tempRepo(t)
  const dir = await tempDir(t)
  const file = await writeTemp(dir, 'img.ram', makeImage(8, 100).bytes)

  // a child that opens (locks) the repo and holds it until its stdin closes
  const holder = spawn(process.execPath, ['--input-type=module', '-e', `
    import { Repo } from ${JSON.stringify(REPO_MODULE)}
    const repo = await Repo.open(process.env.HOLD_REPO)
    process.stdout.write('ready\\n')
    process.stdin.resume()
    process.stdin.on('end', async () => { await repo.close(); process.exit(0) })
  `], { env: childEnv({ HOLD_REPO: repo }), stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise(resolve => holder.once('exit', resolve))
  t.teardown(async () => {
    holder.stdin.end()
    await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 5000))])
    if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL')
  })
  let out = ''
  holder.stdout.setEncoding('utf8').on('data', (s: string) => { out += s })
  await waitFor(() => {
    if (holder.exitCode !== null) throw new Error(`the lock holder exited with ${holder.exitCode}`)
    return out.includes('ready')
  }, 90_000, 'the holder to lock the repo')

  for (const args of [['import', file, '--name', 'x'], ['ls'], ['gc']]) {
    const res = await cli([...args, '--repo', repo])
    t.is(res.code, 1, args[0])
    oneLineError(t, res.stderr, args[0])
    t.true(res.stderr.includes(`PID ${holder.pid}`), res.stderr)
  }

  holder.stdin.end()
  await exited
  t.deepEqual(await ok(t, ['ls', '--json', '--repo', repo]), [])
})

test.serial('--help for the top level and a command; --version', async t => {
  const top = await cli(['--help'])
  t.is(top.code, 0)
  t.regex(top.stdout, /^Usage: memfabric <command>/m)
  t.regex(top.stdout, /^ {2}import +import a VM memory image/m)
  t.regex(top.stdout, /^ {2}providers +/m)
  const exp = await cli(['export', '--help'])
  t.is(exp.code, 0)
  t.regex(exp.stdout, /^Usage: memfabric export REF --out FILE/)
  t.regex(exp.stdout, /-o, --out FILE/)
  t.regex(exp.stdout, /--repo DIR .*env MEMFABRIC_REPO, default: /)
  t.regex(exp.stdout, /Examples:/)
  const version = await cli(['--version'])
  t.regex(version.stdout, /^memfabric \d+\.\d+\.\d+/)
})

test.serial('first Ctrl-C aborts an import cleanly; the repository stays consistent', async t => {
  const repo = await tempRepo(t)
  const dir = await tempDir(t)
  // big enough that the import is still running when the signal lands
  const big = Buffer.alloc(256 * 1024 * 1024)
  for (let off = 0; off < big.length; off += 64 * PAGE) {
    big.writeUInt32LE(off, off)
  }
  const file = await writeTemp(dir, 'big.ram', big)
  const child = spawn(process.execPath, [join(fileURLToPath(new URL('../../cli/bin.ts', import.meta.url))), 'import', file, '--name', 'big', '--repo', repo], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const closed = new Promise<number | null>(resolve => child.once('close', code => { resolve(code) }))
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  // the lock file appears once the CLI has the repo open (its signal handlers are installed by then)
  let done = false
  void closed.then(() => { done = true })
  await waitFor(async () => done || await stat(join(repo, 'repo.lock')).then(() => true, () => false), 90_000, 'the import to start')
  child.kill('SIGINT')
  const code = await closed
  if (code === 0) {
    t.log('import finished before the signal landed')
  } else {
    t.is(code, 130, stderr)
    t.regex(stderr, /interrupted/)
  }
  await waitFor(async () => await stat(join(repo, 'repo.lock')).then(() => false, () => true), 30_000, 'the lock to be released')
  t.regex(await ok(t, ['verify', '--repo', repo]), /^ok/)
  const list = await ok(t, ['ls', '--json', '--repo', repo])
  t.true(list.length === (code === 0 ? 1 : 0))
})
