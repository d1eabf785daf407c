/**
 * Bad input to the network commands of the real CLI, against real daemons: malformed CIDs,
 * unknown refs, bad peer ids, unreachable or malformed multiaddrs, files that are not images.
 * Each gives one line on stderr and a non-zero exit, and the daemon keeps serving. Then the
 * control API itself: malformed RPC bodies are 400, unknown methods 404.
 */
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { writeFile } from 'node:fs/promises'
import net from 'node:net'
import { join } from 'node:path'
import { cli, makeImage, ok, tempDir, writeTemp } from './cli-helpers.ts'
import type { CliResult } from './cli-helpers.ts'
import { startDaemon } from '../fixtures/daemon.ts'
import type { RunningDaemon } from '../fixtures/daemon.ts'
import { waitFor } from '../fixtures/wait.ts'

// a well-formed page CID nobody holds, and a well-formed peer id nobody runs
const UNKNOWN_CID = 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'
const NOBODY = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA'

interface Pair { dir: string, a: string, b: string, da: RunningDaemon, db: RunningDaemon }

async function pair (t: ExecutionContext): Promise<Pair> {
  const dir = await tempDir(t)
  const a = join(dir, 'a')
  const b = join(dir, 'b')
  await ok(t, ['init', '--repo', a, '--site', 'paris', '--listen', '/ip4/127.0.1.7/tcp/0'])
  await ok(t, ['init', '--repo', b, '--site', 'berlin', '--listen', '/ip4/127.0.2.7/tcp/0', '--fabric-key', join(a, 'fabric.key')])
  const da = await startDaemon(t, a)
  const db = await startDaemon(t, b, ['--bootstrap', da.info.addresses[0]])
  await waitFor(async () => {
    const r = await cli(['peers', '--repo', b, '--json'])
    return r.code === 0 && JSON.parse(r.stdout).some((p: any) => p.peerId === da.info.peerId)
  }, { timeout: 60_000 })
  return { dir, a, b, da, db }
}

/** A port on loopback that nobody listens on (bound, read, closed). */
async function closedPort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => { resolve(port) })
    })
  })
}

function fails (t: ExecutionContext, r: CliResult, pattern: RegExp, code = 1): void {
  t.is(r.code, code, `exit code; stderr: ${r.stderr}`)
  t.is(r.stdout, '', 'nothing on stdout')
  const lines = r.stderr.trimEnd().split('\n')
  t.is(lines.length, 1, `one line on stderr: ${r.stderr}`)
  t.regex(lines[0], /^memfabric: error: /)
  t.regex(lines[0], pattern)
}

test.serial('migrate, pull and providers refuse bad input with one-line errors; the daemons keep serving', async t => {
  const { dir, a, b, da, db } = await pair(t)
  const img = makeImage(64, 0)
  const file = await writeTemp(dir, 'vm.ram', img.bytes)
  await ok(t, ['import', file, '--name', 'vm', '--repo', a, '--json'])
  const unreachable = `/ip4/127.0.0.1/tcp/${await closedPort()}/p2p/${NOBODY}`

  // malformed CIDs
  fails(t, await cli(['pull', 'not-a-cid', '--from', da.info.peerId, '--repo', b]), /malformed CID 'not-a-cid'/)
  fails(t, await cli(['providers', 'bafy!!', '--repo', b]), /malformed CID 'bafy!!'/)
  fails(t, await cli(['migrate', 'bafkreinotacid', '--to', db.info.peerId, '--repo', a]), /bafkreinotacid/)
  // unknown refs
  fails(t, await cli(['migrate', 'no-such-image', '--to', db.info.peerId, '--repo', a]), /no image named "no-such-image"/)
  fails(t, await cli(['migrate', UNKNOWN_CID, '--to', db.info.peerId, '--repo', a]), new RegExp(UNKNOWN_CID))
  const unknownRoot = await cli(['pull', UNKNOWN_CID, '--from', da.info.peerId, '--repo', b])
  fails(t, unknownRoot, /held by no reachable peer|manifest/)
  // bad peer ids and multiaddrs
  fails(t, await cli(['migrate', 'vm', '--to', 'not-a-peer', '--repo', a]), /'not-a-peer' is neither a peer id nor a multiaddr/)
  fails(t, await cli(['pull', UNKNOWN_CID, '--from', 'QmNotAPeer', '--repo', b]), /neither a peer id nor a multiaddr/)
  fails(t, await cli(['migrate', 'vm', '--to', '/ip4/999.1.1.1/tcp/1', '--repo', a]), /999\.1\.1\.1/)
  fails(t, await cli(['pull', UNKNOWN_CID, '--from', '/not/a/multiaddr', '--repo', b]), /not\/a\/multiaddr/)
  // well-formed but unreachable
  fails(t, await cli(['migrate', 'vm', '--to', unreachable, '--repo', a]), /cannot reach peer/)
  fails(t, await cli(['pull', UNKNOWN_CID, '--from', unreachable, '--repo', b]), /cannot reach peer/)
  // files that are not images
  const elf = join(dir, 'bad.elf')
  await writeFile(elf, Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]), Buffer.alloc(57)]))
  fails(t, await cli(['migrate', elf, '--to', db.info.peerId, '--repo', a]), /bad\.elf/)
  fails(t, await cli(['migrate', dir, '--to', db.info.peerId, '--repo', a]), /invalid reference ".*": not a CID or an image name/)
  // usage errors exit 2
  fails(t, await cli(['migrate', 'vm', '--repo', a]), /missing --to PEER/, 2)
  fails(t, await cli(['pull', UNKNOWN_CID, '--repo', b]), /missing --from PEER/, 2)
  fails(t, await cli(['providers', '--repo', b]), /CID/, 2)
  fails(t, await cli(['pull', UNKNOWN_CID, '--from', da.info.peerId, '--bogus', '--repo', b]), /unknown option '--bogus'/, 2)

  // both daemons still serve: a real migration works
  const report = await ok(t, ['migrate', 'vm', '--to', db.info.peerId, '--out', 'vm.ram', '--repo', a, '--json'])
  t.is(report.pages, 64)
  t.is(da.child.exitCode, null)
  t.is(db.child.exitCode, null)
})

test.serial('control API: malformed RPC bodies are 400, unknown methods 404, and the daemon keeps serving', async t => {
  const dir = await tempDir(t)
  const repo = join(dir, 'r')
  await ok(t, ['init', '--repo', repo, '--site', 'paris', '--listen', '/ip4/127.0.1.8/tcp/0'])
  const d = await startDaemon(t, repo)
  const post = async (method: string, body: string, type = 'application/json'): Promise<{ status: number, text: string }> => {
    const res = await fetch(`${d.info.api}/api/v0/${method}`, { method: 'POST', headers: { 'content-type': type, ...d.auth }, body }).catch((err: any) => { throw new Error(`POST ${method} ${body.slice(0, 40)}: ${err.cause ?? err}; daemon: ${d.stderr()}`) })
    return { status: res.status, text: await res.text() }
  }
  for (const body of ['{', 'not json', '{"a":1}', '"str"', '42', 'null', '\u0000\u00ff']) {
    const r = await post('stats', body)
    t.is(r.status, 400, `body ${JSON.stringify(body)}`)
    t.regex(r.text, /^bad request: /)
  }
  // over the 1 MiB cap: the server answers 400 as soon as the cap is passed; a client still
  // uploading may see the connection closed instead of the answer
  const big = await post('stats', '[' + '"x",'.repeat(300_000) + '"x"]').catch((err: Error) => ({ status: 0, text: String(err.cause ?? err) }))
  t.log(`oversize body: ${big.status} ${big.text.trim()}`)
  t.true(big.status === 400 || big.status === 0)
  if (big.status === 400) t.regex(big.text, /too large/)
  for (const method of ['nope', 'constructor', 'toString', '__proto__', 'hasOwnProperty', '']) {
    const r = await post(method, '[]')
    t.is(r.status, 404, `method ${JSON.stringify(method)}: ${r.text}`)
  }
  t.is((await fetch(`${d.info.api}/api/v0/stats`)).status, 404, 'GET is not an RPC')
  t.is((await post('stats', '[]', 'text/plain')).status, 415)
  // arguments of the wrong types: an error line, not a crash
  for (const [method, body] of [['inspect', '[42]'], ['pull', '[{}, []]'], ['providers', '["bafy!!"]'], ['migrate', '[null, null, "x"]']]) {
    const r = await post(method, body)
    t.is(r.status, 200)
    const last = JSON.parse(r.text.trim().split('\n').pop()!)
    t.truthy(last.error, `${method} ${body}: ${r.text}`)
    t.is(typeof last.error.code, 'string')
  }
  const stats = await post('stats', '[]')
  t.is(stats.status, 200)
  t.truthy(JSON.parse(stats.text).result)
  t.is(d.child.exitCode, null)
})
