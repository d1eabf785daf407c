import test from 'ava'
import { formatBytes, formatCount, formatDuration, formatFields, formatPercent, formatRatio, formatTable, oneLine, tildify } from '../../cli/output.ts'
import { createProgress, renderProgress } from '../../cli/progress.ts'

test('formatBytes uses binary units', t => {
  t.is(formatBytes(0), '0 B')
  t.is(formatBytes(1023), '1023 B')
  t.is(formatBytes(1024), '1.00 KiB')
  t.is(formatBytes(1536), '1.50 KiB')
  t.is(formatBytes(4096 * 256), '1.00 MiB')
  t.is(formatBytes(16 * 1024 ** 3), '16.0 GiB')
  t.is(formatBytes(300 * 1024 ** 3), '300 GiB')
})

test('ratios, percents, durations, counts', t => {
  t.is(formatRatio(3.14159), '3.14x')
  t.is(formatRatio(Number.POSITIVE_INFINITY), '-')
  t.is(formatPercent(1, 4), '25.0%')
  t.is(formatPercent(1, 0), '-')
  t.is(formatDuration(42), '42s')
  t.is(formatDuration(185), '3m05s')
  t.is(formatDuration(3720), '1h02m')
  t.is(formatDuration(Number.NaN), '--')
  t.is(formatCount(262144), '262,144')
})

test('tables align columns, numbers right', t => {
  const s = formatTable([{ header: 'NAME' }, { header: 'SIZE', right: true }], [['vm1', '1.00 GiB'], ['a-long-name', '4 B']])
  t.is(s, [
    'NAME             SIZE',
    'vm1          1.00 GiB',
    'a-long-name       4 B'
  ].join('\n'))
  t.is(formatFields([['a', '1'], ['long', '2']]), 'a:    1\nlong: 2')
})

test('oneLine and tildify', t => {
  t.is(oneLine('a\n  b\n\nc'), 'a; b; c')
  t.is(tildify('/home/u/.memfabric', '/home/u'), '~/.memfabric')
  t.is(tildify('/home/user2/x', '/home/u'), '/home/user2/x')
})

test('progress line has percentage, rate and ETA', t => {
  const line = renderProgress('import', 512 * 1024 ** 2, 1024 ** 3, 256 * 1024 ** 2)
  t.regex(line, /^import +50% \[#{12}-{12}\] 512 MiB\/1.00 GiB {2}256 MiB\/s {2}ETA 2s$/)
  t.true(line.length < 80)
  const narrow = renderProgress('export', 8 * 1024 ** 2, 400 * 1024 ** 2, 7 * 1024 ** 2, 56)
  t.true(narrow.length <= 55, narrow)
  t.regex(narrow, /ETA 56s$/)
  t.notRegex(narrow, /\[/, 'no room for a bar')
})

test('progress stays silent for the first second, then draws and erases', t => {
  let now = 0
  const out: string[] = []
  const p = createProgress({ write: (s: string) => out.push(s) }, { label: 'export', unitBytes: 4096, now: () => now })
  p.update({ phase: 'export', done: 1, total: 10 })
  now = 500
  p.update({ phase: 'export', done: 2, total: 10 })
  t.is(out.length, 0)
  now = 1500
  p.update({ phase: 'export', done: 5, total: 10 })
  t.is(out.length, 1)
  t.regex(out[0], /export +50%/)
  now = 1550
  p.update({ phase: 'export', done: 6, total: 10 })
  t.is(out.length, 1, 'throttled')
  p.done()
  t.is(out[out.length - 1], '\r\x1b[K')
})
