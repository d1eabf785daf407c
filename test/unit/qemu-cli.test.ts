import test from 'ava'
import { resolve } from 'node:path'
import { findCommand, parseCommandArgs, UsageError } from '../../cli/index.ts'
import type { AnyCommand } from '../../cli/index.ts'

function init (argv: string[]): any {
  const cmd = findCommand('qemu') as AnyCommand
  return cmd.handlerInit(parseCommandArgs(cmd, argv), {})
}

const usage = { instanceOf: UsageError }

test('qemu migrate: one host drives both QEMUs, paths made absolute for the daemon', t => {
  const p = init(['migrate', '--live', '--qmp', 'src.qmp', '--to', 'peer', '--dest-qmp', 'dst.qmp', '--dest-repo', 'dst', '--repo', '/r'])
  t.like(p, { sub: 'migrate', live: true, to: 'peer', repo: '/r', qmp: resolve('src.qmp'), destQmp: resolve('dst.qmp'), destRepo: resolve('dst'), noResume: false })
  t.is(p.incoming, undefined)
})

test('qemu migrate to a receiver needs --incoming; destination flags only with --dest-qmp', t => {
  t.like(init(['migrate', '--qmp', 's', '--to', 'p', '--incoming', 'tcp:10.0.0.2:4444', '--name', 'vm1', '--min-dirty', '64']),
    { sub: 'migrate', incoming: 'tcp:10.0.0.2:4444', name: 'vm1', minDirtyPages: 64, live: false })
  t.throws(() => init(['migrate', '--qmp', 's', '--to', 'p']), usage)
  t.throws(() => init(['migrate', '--qmp', 's', '--to', 'p', '--dest-qmp', 'd']), usage)
  t.throws(() => init(['migrate', '--qmp', 's', '--to', 'p', '--incoming', 'u', '--dest-ram', 'x']), usage)
  t.throws(() => init(['migrate', '--qmp', 's', '--incoming', 'u']), usage)
  t.throws(() => init(['migrate', '--to', 'p', '--incoming', 'u']), usage)
  t.throws(() => init(['migrate', '--qmp', 's', '--to', 'p', '--incoming', 'u', '--max-rounds', 'x']), usage)
})

test('qemu receive needs --name and --incoming, refuses source-side flags', t => {
  t.like(init(['receive', '--qmp', 'd.qmp', '--name', 'vm1', '--incoming', 'tcp:0.0.0.0:4444', '--timeout', '60']),
    { sub: 'receive', name: 'vm1', incoming: 'tcp:0.0.0.0:4444', timeoutMs: 60_000, qmp: resolve('d.qmp') })
  t.throws(() => init(['receive', '--qmp', 'd', '--incoming', 'u']), usage)
  t.throws(() => init(['receive', '--qmp', 'd', '--name', 'n']), usage)
  t.throws(() => init(['receive', '--qmp', 'd', '--name', 'n', '--incoming', 'u', '--live']), usage)
  t.throws(() => init(['bogus', '--qmp', 'd']), usage)
})
