import test from 'ava'
import http from 'node:http'
import { ApiServer } from '../../node/api/http-server.ts'
import { HttpApiClient } from '../../node/api/http-client.ts'
import { RefNotFoundError } from '../../store/errors.ts'

// The RPC layer is tested against a small in-process backend; the daemon e2e tests run it
// against the real node.
const backend = {
  async id () { return { peerId: 'p', site: 's', addresses: [] } },
  async importImage (path: string, options: { name?: string, onProgress?(p: unknown): void }) {
    options.onProgress?.({ phase: 'import', done: 1, total: 2 })
    options.onProgress?.({ phase: 'import', done: 2, total: 2 })
    return { root: 'bafy', path, name: options.name }
  },
  async remove (ref: string) { throw new RefNotFoundError(`no image named ${ref}`) }
}

async function serve (t: any): Promise<ApiServer> {
  const server = new ApiServer(backend, { port: 0 })
  await server.listen()
  t.teardown(async () => server.close())
  return server
}

test('calls reach the backend with progress and results', async t => {
  const server = await serve(t)
  const client = await HttpApiClient.connect(server.url) as any
  const progress: unknown[] = []
  const result = await client.importImage('/tmp/x', { name: 'vm1', onProgress: (p: unknown) => progress.push(p) })
  t.deepEqual(result, { root: 'bafy', path: '/tmp/x', name: 'vm1' })
  t.is(progress.length, 2)
})

test('typed errors keep their code across the API', async t => {
  const server = await serve(t)
  const client = await HttpApiClient.connect(server.url) as any
  const err = await t.throwsAsync(client.remove('nope'))
  t.is((err as any).code, 'ERR_REF_NOT_FOUND')
  t.regex(err!.message, /no image named nope/)
})

test('cross-origin browser requests and non-JSON posts are refused', async t => {
  const server = await serve(t)
  const cross = await fetch(`${server.url}/api/v0/id`, { method: 'POST', headers: { 'content-type': 'application/json', origin: 'http://evil.example' }, body: '[]' })
  t.is(cross.status, 403)
  const form = await fetch(`${server.url}/api/v0/id`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '[]' })
  t.is(form.status, 415)
  // fetch() will not forge a Host header; a raw request does (DNS rebinding)
  const status = await new Promise<number>((resolve, reject) => {
    const req = http.request(`${server.url}/api/v0/id`, { method: 'POST', headers: { 'content-type': 'application/json', host: 'evil.example' } }, res => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('error', reject)
    req.end('[]')
  })
  t.is(status, 403)
})

test('binding beyond loopback needs a token', t => {
  t.throws(() => new ApiServer(backend, { host: '0.0.0.0', port: 0 }), { message: /token/ })
})
