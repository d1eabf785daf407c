import test from 'ava'
import { run } from '../../cli/index.ts'
import type { RunIo } from '../../cli/index.ts'
import type { ImageDetails, MemfabricApi } from '../../node/api/index.ts'
import { RefNotFoundError, RepoLockedError } from '../../store/errors.ts'

const ROOT = 'bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'

const DETAILS: ImageDetails = {
  root: ROOT,
  names: ['vm1'],
  format: 'raw',
  size: 3 * 4096 + 100,
  pages: 4,
  zeroPages: 1,
  distinctPages: 2,
  complete: true,
  createdAt: Date.UTC(2026, 0, 1),
  pageSize: 4096,
  extents: [{ offset: 0, length: 3 * 4096 + 100 }],
  chunks: 1
}

/** An api with canned answers that records what it was asked. */
function fakeApi (overrides: Partial<MemfabricApi> = {}): MemfabricApi & { calls: string[], closed: number } {
  const calls: string[] = []
  const api = {
    online: false,
    calls,
    closed: 0,
    async importImage (path: string, options: any = {}) {
      calls.push(`import ${path} ${options.name ?? ''}`)
      options.onProgress?.({ phase: 'import', done: 4, total: 4 })
      return { root: ROOT, size: DETAILS.size, pages: 4, zeroPages: 1, newPages: 2, format: 'raw' as const }
    },
    async exportImage (ref: string, out: string) { calls.push(`export ${ref} ${out}`) },
    async list () { return [DETAILS] },
    async inspect (ref: string) {
      if (ref !== 'vm1' && ref !== ROOT) throw new RefNotFoundError(`no image named '${ref}'`)
      return DETAILS
    },
    async remove (ref: string) { calls.push(`rm ${ref}`) },
    async gc () { return { removedPages: 2, reclaimedBytes: 8192 } },
    async stats () { return { images: 1, logicalBytes: DETAILS.size, zeroPages: 1, distinctPages: 2, storedBytes: 8192, packBytes: 8192, dedupRatio: DETAILS.size / 8192 } },
    async verify () { return { ok: true, images: 1, pagesChecked: 2, problems: [] } },
    async id () { return { peerId: '12D3KooWtest', site: 'fra1', addresses: [] } },
    async peers () { return [] },
    async providers () { return [] },
    async migrate () { throw new Error('not used by these tests') },
    async pull () { throw new Error('not used by these tests') },
    async exportCar () { throw new Error('not used by these tests') },
    async importCar () { throw new Error('not used by these tests') },
    async close () { api.closed++ },
    ...overrides
  }
  return api
}

interface Captured { code: number, stdout: string, stderr: string }

async function cli (argv: string[], api: MemfabricApi = fakeApi(), io: RunIo = {}): Promise<Captured> {
  let stdout = ''
  let stderr = ''
  const code = await run(argv, {
    stdout: { write: (s: string) => { stdout += s } },
    stderr: { write: (s: string) => { stderr += s } },
    env: {},
    connect: async () => api,
    ...io
  })
  return { code, stdout, stderr }
}

test('import --json prints exactly one object with the summary figures', async t => {
  const api = fakeApi()
  const r = await cli(['import', '/tmp/x.ram', '--name', 'vm1', '--json'], api)
  t.is(r.code, 0)
  t.is(r.stderr, '')
  const obj = JSON.parse(r.stdout)
  t.like(obj, { root: ROOT, size: DETAILS.size, pages: 4, zeroPages: 1, newPages: 2, name: 'vm1' })
  t.deepEqual(api.calls, ['import /tmp/x.ram vm1'])
  t.is(api.closed, 1)
})

test('human output uses units and tables', async t => {
  const ls = await cli(['ls'])
  t.regex(ls.stdout, /^NAME +ROOT +FORMAT +SIZE/)
  t.regex(ls.stdout, /vm1 +bafy\S+ +raw +12\.1 KiB/)
  const stats = await cli(['stats'])
  t.regex(stats.stdout, /dedup ratio: +1\.51x/)
  const gc = await cli(['gc'])
  t.is(gc.stdout, 'removed 2 pages, reclaimed 8.00 KiB\n')
})

test('global options may come before the command', async t => {
  let repo = ''
  const r = await cli(['--repo', '/some/repo', 'stats', '--json'], fakeApi(), { connect: async (dir) => { repo = dir; return fakeApi() } })
  t.is(r.code, 0)
  t.is(repo, '/some/repo')
  t.is(JSON.parse(r.stdout).images, 1)
})

test('typed errors: one line on stderr, exit 1, api closed', async t => {
  const api = fakeApi()
  const r = await cli(['inspect', 'nope'], api)
  t.is(r.code, 1)
  t.is(r.stdout, '')
  t.is(r.stderr, 'memfabric: error: no image named \'nope\'\n')
  t.is(api.closed, 1)
})

test('connect failures (locked repo) surface as one line', async t => {
  const r = await cli(['ls'], fakeApi(), { connect: async () => { throw new RepoLockedError('repository /r is in use by PID 4242') } })
  t.is(r.code, 1)
  t.is(r.stderr, 'memfabric: error: repository /r is in use by PID 4242\n')
})

test('unexpected errors: one line, stack only with DEBUG', async t => {
  const boom = fakeApi({ async stats () { throw new Error('boom\nsecond line') } })
  const r = await cli(['stats'], boom)
  t.is(r.code, 1)
  t.is(r.stderr, 'memfabric: error: boom; second line\n')
  const d = await cli(['stats'], boom, { env: { DEBUG: '1' } })
  t.true(d.stderr.split('\n').length > 3)
})

test('usage errors exit 2 with one line', async t => {
  for (const argv of [['ls', '--nope'], ['import'], ['export', 'vm1'], ['bogus'], ['--nope'], ['init', '--listen', 'zzz'], ['ls', '--repo']]) {
    const r = await cli(argv)
    t.is(r.code, 2, argv.join(' '))
    t.is(r.stderr.trimEnd().split('\n').length, 1, argv.join(' '))
    t.regex(r.stderr, /^memfabric: error: /)
    t.is(r.stdout, '')
  }
})

test('no command prints the help on stderr, exit 2', async t => {
  const r = await cli([])
  t.is(r.code, 2)
  t.regex(r.stderr, /Commands:/)
})

test('--help lists commands; CMD --help shows usage, options with defaults, examples', async t => {
  const top = await cli(['--help'])
  t.is(top.code, 0)
  for (const n of ['init', 'import', 'export', 'ls', 'inspect', 'rm', 'gc', 'stats', 'verify', 'id', 'peers', 'providers']) {
    t.regex(top.stdout, new RegExp(`^  ${n} +\\S`, 'm'))
  }
  const imp = await cli(['import', '--help'])
  t.is(imp.code, 0)
  t.regex(imp.stdout, /^Usage: memfabric import FILE/)
  t.regex(imp.stdout, /--name NAME/)
  t.regex(imp.stdout, /--repo DIR +repository directory \(env MEMFABRIC_REPO, default: ~?\/.*\.memfabric\)/)
  t.regex(imp.stdout, /Examples:\n {2}memfabric import/)
  const bad = await cli(['import', '--bogus', '-h'])
  t.is(bad.code, 0, 'help wins over a bad flag')
  const ver = await cli(['--version'])
  t.regex(ver.stdout, /^memfabric \d+\.\d+\.\d+\n$/)
})

test('verify with problems exits 1 and lists them', async t => {
  const api = fakeApi({ async verify () { return { ok: false, images: 1, pagesChecked: 2, problems: ['page bafk... missing'] } } })
  const r = await cli(['verify'], api)
  t.is(r.code, 1)
  t.is(r.stdout, 'page bafk... missing\n')
  t.regex(r.stderr, /verify found 1 problem/)
})

test('an aborted operation exits 130', async t => {
  const controller = new AbortController()
  const api = fakeApi({
    async importImage (_path: string, options: any = {}) {
      controller.abort()
      options.signal.throwIfAborted()
      throw new Error('not reached')
    }
  })
  const r = await cli(['import', 'x'], api, { signal: controller.signal })
  t.is(r.code, 130)
  t.is(r.stderr, 'memfabric: interrupted\n')
  t.is(api.closed, 1)
})

test('progress is not drawn when stderr is not a TTY or with --json', async t => {
  let stderr = ''
  const code = await run(['import', 'x', '--json'], {
    stdout: { write: () => true },
    stderr: { write: (s: string) => { stderr += s }, isTTY: true },
    env: {},
    connect: async () => fakeApi()
  })
  t.is(code, 0)
  t.is(stderr, '')
})
