import test from 'ava'
import http from 'node:http'
import { access, readFile, stat, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ApiServer } from '../../node/api/http-server.ts'
import { LocalApi } from '../../node/api/local.ts'
import { API_FILE, connectApi } from '../../node/api/connect.ts'
import { API_TOKEN_FILE, createApiToken, writeApiToken } from '../../node/api/token.ts'
import { cli, makeImage, ok, tempDir, tempRepo, writeTemp } from './cli-helpers.ts'
import { startDaemon } from '../fixtures/daemon.ts'

/** A stand-in daemon: this process holds the repo and serves it on the control API. */
async function fakeDaemon (t: any, repo: string): Promise<{ api: LocalApi, server: ApiServer, url: string }> {
  const api = await LocalApi.open(repo)
  const token = createApiToken()
  const server = new ApiServer(api, { port: 0, token })
  const url = await server.listen()
  await writeApiToken(repo, token)
  await writeFile(join(repo, API_FILE), url + '\n')
  t.teardown(async () => { await server.close(); await api.close() })
  return { api, server, url }
}

// serial: each test spawns several CLI processes; side by side they only starve each other
test.serial('commands go through the daemon when its api file answers', async t => {
  const repo = await tempRepo(t)
  const dir = await tempDir(t)
  await fakeDaemon(t, repo)
  const img = makeImage(16, 10)
  const file = await writeTemp(dir, 'vm.ram', img.bytes)

  // the repo is locked by this process: only the daemon path can answer these
  const imp = await ok(t, ['import', file, '--name', 'vm', '--json', '--repo', repo])
  t.like(imp, { pages: 17, zeroPages: 4 })
  const list = await ok(t, ['ls', '--json', '--repo', repo])
  t.deepEqual(list.map((i: any) => i.names), [['vm']])
  const out = join(dir, 'vm.out')
  await ok(t, ['export', 'vm', '--out', out, '--repo', repo])
  t.true((await readFile(out)).equals(img.bytes))
  const missing = await cli(['inspect', 'nope', '--repo', repo])
  t.is(missing.code, 1)
  t.regex(missing.stderr, /^memfabric: error: no image named "nope"\n$/)
})

test.serial('a stale api file (daemon gone) falls back to the repository', async t => {
  const repo = await tempRepo(t)
  const { server, api } = await fakeDaemon(t, repo)
  await server.close()
  await api.close()
  const local = await connectApi(repo)
  t.teardown(async () => { await local.close() })
  t.false(local.online)
  await local.close()
  const list = await ok(t, ['ls', '--json', '--repo', repo])
  t.deepEqual(list, [])
})

test.serial('without an api file connectApi opens the repository directly', async t => {
  const repo = await tempRepo(t)
  await unlink(join(repo, API_FILE)).catch(() => {})
  const api = await connectApi(repo)
  t.teardown(async () => { await api.close() })
  t.false(api.online)
  const id = await api.id()
  t.is(id.site, 'test')
  t.deepEqual(id.addresses, [])
  await t.throwsAsync(api.peers(), { code: 'ERR_NO_DAEMON', message: /no daemon is running on repository .*; start one with `memfabric daemon`/ })
  await t.throwsAsync(api.providers('bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'), { code: 'ERR_NO_DAEMON' })
})

/** A raw HTTP request (fetch() will not forge Host); resolves to the status. */
async function raw (url: string, init: { method?: string, headers?: Record<string, string>, body?: string } = {}): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const req = http.request(url, { method: init.method ?? 'GET', headers: init.headers }, res => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('error', reject)
    req.end(init.body)
  })
}

test.serial('a real daemon: every caller needs the token of <repo>/api.token (0600); the CLI reads it', async t => {
  const repo = await tempRepo(t)
  const d = await startDaemon(t, repo, ['--metrics'])
  t.is((await stat(join(repo, API_TOKEN_FILE))).mode & 0o777, 0o600)
  const json = { 'content-type': 'application/json' }
  // no token, a wrong one: 401 on the RPC methods and on everything that shows data
  for (const headers of [json, { ...json, authorization: 'Bearer nope' }]) {
    t.is((await fetch(`${d.info.api}/api/v0/id`, { method: 'POST', headers, body: '[]' })).status, 401)
    t.is((await fetch(`${d.info.api}/api/v0/callback`, { method: 'POST', headers, body: '{"id":"x"}' })).status, 401)
    for (const path of ['/status.json', '/events', '/metrics']) {
      t.is((await fetch(`${d.info.api}${path}`, { headers })).status, 401, path)
    }
  }
  // the page's constant files are public (they hold no data)
  t.is((await fetch(`${d.info.api}/`)).status, 200)
  t.is((await fetch(`${d.info.api}/status.json`, { headers: d.auth })).status, 200)
  t.is((await fetch(`${d.info.api}/metrics`, { headers: d.auth })).status, 200)
  // the CLI reads the token file; a wrong token from the environment is refused, not bypassed
  t.deepEqual(await ok(t, ['ls', '--repo', repo, '--json']), [])
  const wrong = await cli(['ls', '--repo', repo], { env: { MEMFABRIC_API_TOKEN: 'nope' } })
  t.is(wrong.code, 1)
  t.regex(wrong.stderr, /refused this caller: it needs the token in <repo>\/api\.token/)
  t.is(await d.stop(), 0)
  await t.throwsAsync(access(join(repo, API_TOKEN_FILE)), undefined, 'the token file goes with the daemon')
})

test.serial('a real daemon: rebinding names and foreign origins are refused, even with the token', async t => {
  const repo = await tempRepo(t)
  const d = await startDaemon(t, repo)
  const port = new URL(d.info.api).port
  for (const host of [`127.attacker.example:${port}`, `127.0.0.1.nip.io:${port}`, `localhost.attacker.example:${port}`, `127.0.0.1:${Number(port) + 1}`]) {
    t.is(await raw(`${d.info.api}/status.json`, { headers: { host, ...d.auth } }), 403, `Host: ${host}`)
    t.is(await raw(`${d.info.api}/api/v0/id`, { method: 'POST', headers: { host, 'content-type': 'application/json', ...d.auth }, body: '[]' }), 403, `Host: ${host}`)
  }
  for (const origin of ['http://evil.example', `http://127.attacker.example:${port}`, `http://localhost:${Number(port) + 1}`]) {
    t.is(await raw(`${d.info.api}/status.json`, { headers: { origin, ...d.auth } }), 403, `Origin: ${origin}`)
  }
  t.is(await raw(`${d.info.api}/status.json`, { headers: { host: `localhost:${port}`, origin: `http://localhost:${port}`, ...d.auth } }), 200)
})

test.serial('a real daemon runs no command and opens no relative path sent over its API', async t => {
  const repo = await tempRepo(t)
  const dir = await tempDir(t)
  const d = await startDaemon(t, repo)
  const ram = await writeTemp(dir, 'vm.ram', makeImage(8, 0).bytes)
  const marker = join(dir, 'pwned')
  const post = async (method: string, args: unknown[]): Promise<{ status: number, text: string }> => {
    const res = await fetch(`${d.info.api}/api/v0/${method}`, { method: 'POST', headers: { 'content-type': 'application/json', ...d.auth }, body: JSON.stringify(args) })
    return { status: res.status, text: await res.text() }
  }
  // the live migration's pause is a callback to the caller: a command field is refused (400), not ignored
  const live = await post('migrate', [ram, 'peer', { live: true, pauseCommand: `touch ${marker}` }])
  t.is(live.status, 400)
  t.regex(live.text, /migrate takes no option 'pauseCommand'/)
  await t.throwsAsync(access(marker), undefined, 'nothing ran')
  // paths must be absolute: the daemon's working directory means nothing to the caller
  for (const [method, args] of [['importImage', ['vm.ram', {}]], ['exportImage', ['vm', 'out.ram', {}]], ['importCar', ['vm.car', {}]], ['exportCar', ['vm', 'vm.car', {}]]] as const) {
    const r = await post(method, [...args])
    t.is(r.status, 400, method)
    t.regex(r.text, /needs an absolute path/)
  }
})

test.serial('relative paths from the CLI resolve in the caller\'s working directory, not the daemon\'s', async t => {
  const repo = await tempRepo(t)
  const dir = await tempDir(t)
  await startDaemon(t, repo)
  const img = makeImage(8, 100)
  await writeTemp(dir, 'vm.ram', img.bytes)
  const imported = await ok(t, ['import', 'vm.ram', '--name', 'vm', '--repo', repo, '--json'], { cwd: dir })
  t.is(imported.pages, 9)
  await ok(t, ['export', 'vm', '--out', 'back.ram', '--repo', repo], { cwd: dir })
  t.true((await readFile(join(dir, 'back.ram'))).equals(img.bytes))
  await ok(t, ['export', 'vm', '--car', 'vm.car', '--repo', repo], { cwd: dir })
  const car = await ok(t, ['import', '--car', 'vm.car', '--name', 'vm-car', '--repo', repo, '--json'], { cwd: dir })
  t.is(car.root, imported.root)
})
