import test from 'ava'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_REPO, REPO_ENV } from '../../store/constants.ts'
import { commands, findCommand, parseCommandArgs, UsageError } from '../../cli/index.ts'
import type { AnyCommand, Env } from '../../cli/index.ts'

/** Parse argv for a command and run its pure handlerInit. */
function init (name: string, argv: string[], env: Env = {}): any {
  const cmd = findCommand(name) as AnyCommand
  return cmd.handlerInit(parseCommandArgs(cmd, argv), env)
}

const usage = { instanceOf: UsageError }

test('every command has the module shape and unique name', t => {
  const names = new Set<string>()
  for (const c of commands) {
    t.is(typeof c.name, 'string')
    t.false(names.has(c.name))
    names.add(c.name)
    t.true(c.description.length > 0 && !c.description.includes('\n'))
    t.true(c.usage.startsWith(c.name))
    t.is(typeof c.handlerInit, 'function')
    t.is(typeof c.handler, 'function')
  }
  for (const n of ['init', 'import', 'export', 'ls', 'inspect', 'rm', 'gc', 'stats', 'verify', 'id', 'peers', 'providers']) {
    t.truthy(findCommand(n), n)
  }
})

test('--repo: flag beats env beats default', t => {
  t.is(init('ls', []).repo, DEFAULT_REPO)
  t.is(DEFAULT_REPO, join(homedir(), '.memfabric'))
  t.is(init('ls', [], { [REPO_ENV]: '/env/repo' }).repo, '/env/repo')
  t.is(init('ls', ['--repo', '/flag/repo'], { [REPO_ENV]: '/env/repo' }).repo, '/flag/repo')
  t.is(init('ls', ['--repo=/eq/repo']).repo, '/eq/repo')
  t.is(init('ls', [], { [REPO_ENV]: '' }).repo, DEFAULT_REPO)
  t.throws(() => init('ls', ['--repo', '']), usage)
  t.throws(() => init('ls', ['--repo']), usage)
})

test('--json defaults to false on every command', t => {
  t.false(init('stats', []).json)
  t.true(init('stats', ['--json']).json)
  t.throws(() => init('stats', ['--json=yes']), usage)
})

test('unknown flags and extra arguments are usage errors', t => {
  t.throws(() => init('ls', ['--bogus']), { instanceOf: UsageError, message: /unknown option '--bogus'/ })
  t.throws(() => init('ls', ['extra']), { instanceOf: UsageError, message: /unexpected argument 'extra'/ })
  t.throws(() => init('gc', ['-x']), usage)
})

test('init: site, listen and bootstrap validated; lists repeat or comma-separate', t => {
  const p = init('init', ['--site', 'fra1', '--listen', '/ip4/0.0.0.0/tcp/4001', '--listen', '/ip4/127.0.0.1/tcp/4002,/ip4/127.0.0.1/tcp/4003'])
  t.is(p.site, 'fra1')
  t.deepEqual(p.listen, ['/ip4/0.0.0.0/tcp/4001', '/ip4/127.0.0.1/tcp/4002', '/ip4/127.0.0.1/tcp/4003'])
  t.is(p.bootstrap, undefined)
  const d = init('init', [])
  t.is(d.site, undefined)
  t.is(d.listen, undefined)
  t.throws(() => init('init', ['--listen', 'not-a-multiaddr']), { instanceOf: UsageError, message: /invalid multiaddr/ })
  t.throws(() => init('init', ['--bootstrap', '/ip4/999.0.0.1/tcp/1']), usage)
  t.throws(() => init('init', ['--site', 'bad site']), { instanceOf: UsageError, message: /invalid site/ })
  t.throws(() => init('init', ['--site', '']), usage)
})

test('import: FILE required, --name optional and non-empty', t => {
  t.like(init('import', ['/tmp/a.ram', '--name', 'vm1', '--repo', '/r']), { repo: '/r', json: false, file: '/tmp/a.ram', name: 'vm1' })
  t.is(init('import', ['a.ram']).name, undefined)
  t.is(init('import', ['a.ram', '-n', 'vm2']).name, 'vm2')
  t.throws(() => init('import', []), { instanceOf: UsageError, message: /missing argument FILE/ })
  t.throws(() => init('import', ['a', 'b']), usage)
  t.throws(() => init('import', ['a', '--name']), usage)
  t.throws(() => init('import', ['a', '--name', ' ']), usage)
  t.throws(() => init('import', ['']), usage)
})

test('export: REF and --out required', t => {
  t.like(init('export', ['vm1', '--out', '/tmp/o', '--repo', '/r']), { repo: '/r', json: false, ref: 'vm1', out: '/tmp/o' })
  t.is(init('export', ['vm1', '-o', 'o']).out, 'o')
  t.throws(() => init('export', ['vm1']), { instanceOf: UsageError, message: /--out/ })
  t.throws(() => init('export', ['--out', 'o']), { instanceOf: UsageError, message: /missing argument REF/ })
})

test('inspect and rm take exactly one REF', t => {
  t.is(init('inspect', ['vm1']).ref, 'vm1')
  t.is(init('rm', ['vm1']).ref, 'vm1')
  t.throws(() => init('inspect', []), usage)
  t.throws(() => init('rm', []), usage)
  t.throws(() => init('rm', ['a', 'b']), usage)
})

test('verify: --deep defaults to off', t => {
  t.false(init('verify', []).deep)
  t.true(init('verify', ['--deep']).deep)
})

test('ls, gc, stats, id, peers take no arguments', t => {
  for (const n of ['ls', 'gc', 'stats', 'id', 'peers']) {
    t.deepEqual(init(n, ['--repo', '/r']), { repo: '/r', json: false }, n)
    t.throws(() => init(n, ['x']), usage)
  }
})

test('providers: CID parsed and normalised; malformed CID is a typed error', t => {
  const cid = 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'
  t.is(init('providers', [cid]).cid, cid)
  t.throws(() => init('providers', ['not-a-cid']), { code: 'ERR_INVALID_REF', message: /malformed CID/ })
  t.throws(() => init('providers', []), usage)
})

test('a flag followed by another flag instead of its value is a clear usage error', t => {
  t.throws(() => init('import', ['a.ram', '--name', '--repo', '/r']), { instanceOf: UsageError, message: /^option '--name' needs a value$/ })
  t.throws(() => init('export', ['vm1', '-o', '--json']), { instanceOf: UsageError, message: /^option '--out' needs a value$/ })
})
