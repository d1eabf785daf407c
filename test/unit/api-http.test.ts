import test from 'ava'
import http from 'node:http'
import { ApiServer } from '../../node/api/http-server.ts'
import { HttpApiClient } from '../../node/api/http-client.ts'
import { hostCheck, originMatches } from '../../node/api/host-check.ts'
import { RefNotFoundError } from '../../store/errors.ts'

const TOKEN = 'test-token'

// The RPC layer is tested against a small in-process backend; the daemon e2e tests run it
// against the real node.
const backend = {
  async id () { return { peerId: 'p', site: 's', addresses: [] } },
  async importImage (path: string, options: { name?: string, onProgress?(p: unknown): void }) {
    options.onProgress?.({ phase: 'import', done: 1, total: 2 })
    options.onProgress?.({ phase: 'import', done: 2, total: 2 })
    return { root: 'bafy', path, name: options.name }
  },
  async remove (ref: string) { throw new RefNotFoundError(`no image named ${ref}`) },
  async migrate (ref: string, _to: string, options: { live?: boolean, pause?(): Promise<void> }) {
    const before = 'rounds'
    if (options.pause != null) await options.pause()
    return { ref, live: options.live, paused: options.pause != null, before }
  }
}

async function serve (t: any): Promise<ApiServer> {
  const server = new ApiServer(backend, { port: 0, token: TOKEN })
  await server.listen()
  t.teardown(async () => server.close())
  return server
}

/** A raw request: fetch() will not forge a Host header, this does (DNS rebinding). */
async function raw (url: string, headers: Record<string, string>, body = '[]', method = 'POST'): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const req = http.request(url, { method, headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}`, ...headers } }, res => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('error', reject)
    req.end(method === 'POST' ? body : undefined)
  })
}

test('calls reach the backend with progress and results', async t => {
  const server = await serve(t)
  const client = await HttpApiClient.connect(server.url, { token: TOKEN }) as any
  const progress: unknown[] = []
  const result = await client.importImage('/tmp/x', { name: 'vm1', onProgress: (p: unknown) => progress.push(p) })
  t.deepEqual(result, { root: 'bafy', path: '/tmp/x', name: 'vm1' })
  t.is(progress.length, 2)
})

test('typed errors keep their code across the API', async t => {
  const server = await serve(t)
  const client = await HttpApiClient.connect(server.url, { token: TOKEN }) as any
  const err = await t.throwsAsync(client.remove('nope'))
  t.is((err as any).code, 'ERR_REF_NOT_FOUND')
  t.regex(err!.message, /no image named nope/)
})

test('a caller without the token, or with another, is refused with 401', async t => {
  const server = await serve(t)
  for (const authorization of [undefined, 'Bearer wrong', `Basic ${TOKEN}`, `Bearer ${TOKEN}x`, TOKEN]) {
    const res = await fetch(`${server.url}/api/v0/id`, { method: 'POST', headers: { 'content-type': 'application/json', ...(authorization != null ? { authorization } : {}) }, body: '[]' })
    t.is(res.status, 401, String(authorization))
  }
  await t.throwsAsync(HttpApiClient.connect(server.url), { code: 'ERR_API_REQUEST', message: /refused this caller/ })
  await t.throwsAsync(HttpApiClient.connect(server.url, { token: 'wrong' }), { code: 'ERR_API_REQUEST', message: /refused this caller/ })
})

test('cross-origin browser requests, foreign Host headers and non-JSON posts are refused', async t => {
  const server = await serve(t)
  const port = new URL(server.url).port
  const cross = await fetch(`${server.url}/api/v0/id`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}`, origin: 'http://evil.example' }, body: '[]' })
  t.is(cross.status, 403)
  const form = await fetch(`${server.url}/api/v0/id`, { method: 'POST', headers: { 'content-type': 'text/plain', authorization: `Bearer ${TOKEN}` }, body: '[]' })
  t.is(form.status, 415)
  const url = `${server.url}/api/v0/id`
  // rebinding names, look-alikes and other ports: refused before the token is even looked at
  for (const host of ['evil.example', `127.attacker.example:${port}`, `127.0.0.1.attacker.example:${port}`, `localhost.attacker.example:${port}`,
    `127.0.0.1:${Number(port) + 1}`, '127.0.0.1', `127.0.0.1:${port}.evil`, `[::1]:${Number(port) + 1}`]) {
    t.is(await raw(url, { host }), 403, `Host: ${host}`)
  }
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`]) {
    t.is(await raw(url, { host }), 200, `Host: ${host}`)
  }
  // Origin must be this very host, scheme and port
  for (const origin of [`http://127.0.0.1:${Number(port) + 1}`, `https://127.0.0.1:${port}`, `http://127.attacker.example:${port}`, 'null', `http://localhost:${port}`]) {
    t.is(await raw(url, { host: `127.0.0.1:${port}`, origin }), 403, `Origin: ${origin}`)
  }
  t.is(await raw(url, { host: `localhost:${port}`, origin: `http://localhost:${port}` }), 200)
  // the status page's reads need the token too (the page's own files do not)
  t.is(await raw(`${server.url}/status.json`, { host: `127.attacker.example:${port}` }, '', 'GET'), 403)
})

test('the Host check is exact for each kind of bind address', t => {
  const loop = hostCheck('127.0.0.1', 5001)
  t.true(loop('127.0.0.1:5001'))
  t.true(loop('localhost:5001'))
  t.true(loop('[::1]:5001'))
  t.false(loop('127.0.0.1'))
  t.false(loop('127.0.0.2:5001'))
  t.false(loop('127.attacker.example:5001'))
  t.false(loop(undefined))
  const other = hostCheck('127.0.1.5', 80)
  t.true(other('127.0.1.5'))
  t.true(other('127.0.1.5:80'))
  t.true(other('localhost'))
  const lan = hostCheck('10.0.0.5', 5001)
  t.true(lan('10.0.0.5:5001'))
  t.false(lan('localhost:5001'))
  t.false(lan('10.0.0.5.attacker.example:5001'))
  const any = hostCheck('0.0.0.0', 5001)
  t.true(any('10.1.2.3:5001'))
  t.true(any('[fe80::1]:5001'))
  t.true(any('localhost:5001'))
  t.false(any('10.1.2.3:5002'))
  t.false(any('myhost.example:5001'), 'names can be rebound; only IP literals')
  t.true(originMatches(undefined, 'localhost:5001'))
  t.true(originMatches('http://localhost:5001', 'localhost:5001'))
  t.false(originMatches('http://localhost:5001', '127.0.0.1:5001'))
})

test('options outside a method\'s shape and relative paths are refused with 400', async t => {
  const server = await serve(t)
  const post = async (method: string, body: unknown): Promise<{ status: number, text: string }> => {
    const res = await fetch(`${server.url}/api/v0/${method}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: JSON.stringify(body) })
    return { status: res.status, text: await res.text() }
  }
  // the live migration's pause is the caller's callback: a command for the daemon to run is refused
  const withCommand = await post('migrate', ['/tmp/vm.ram', 'peer', { live: true, pauseCommand: 'touch /tmp/pwned' }])
  t.is(withCommand.status, 400)
  t.regex(withCommand.text, /migrate takes no option 'pauseCommand'/)
  const relative = await post('importImage', ['vm.ram', {}])
  t.is(relative.status, 400)
  t.regex(relative.text, /needs an absolute path, got 'vm.ram'/)
  t.is((await post('importImage', ['/tmp/vm.ram', { name: 'x', shell: 'x' }])).status, 400)
  t.is((await post('importImage', ['/tmp/vm.ram', { name: 'x' }])).status, 200)
})

test('a callback option runs in the caller: the daemon asks over the stream and waits for the answer', async t => {
  const server = await serve(t)
  const client = await HttpApiClient.connect(server.url, { token: TOKEN }) as any
  let paused = 0
  const result = await client.migrate('/tmp/vm.ram', 'peer', { live: true, pause: async () => { paused++ } })
  t.deepEqual(result, { ref: '/tmp/vm.ram', live: true, paused: true, before: 'rounds' })
  t.is(paused, 1)
  // the caller's failure comes back as the call's error, with its code
  const err = await t.throwsAsync(client.migrate('/tmp/vm.ram', 'peer', { live: true, pause: async () => { throw Object.assign(new Error('kill: no such process'), { code: 'ERR_PAUSE_COMMAND' }) } }))
  t.is((err as any).code, 'ERR_PAUSE_COMMAND')
  t.regex(err!.message, /no such process/)
  // without a pause the daemon gets none
  t.like(await client.migrate('/tmp/vm.ram', 'peer', { live: true }), { paused: false })
  // a `true` sent by anyone else is only a flag: answering needs the call's unguessable id
  const res = await fetch(`${server.url}/api/v0/callback`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ id: 'guess' }) })
  t.is(res.status, 404)
})

test('the control API never starts without a token', t => {
  t.throws(() => new ApiServer(backend, { port: 0, token: '' }), { message: /token/ })
})
