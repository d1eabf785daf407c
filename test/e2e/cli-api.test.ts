import test from 'ava'
import { readFile, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ApiServer } from '../../node/api/http-server.ts'
import { LocalApi } from '../../node/api/local.ts'
import { API_FILE, connectApi } from '../../node/api/connect.ts'
import { cli, makeImage, ok, tempDir, tempRepo, writeTemp } from './cli-helpers.ts'

/** A stand-in daemon: this process holds the repo and serves it on the control API. */
async function fakeDaemon (t: any, repo: string): Promise<{ api: LocalApi, server: ApiServer, url: string }> {
  const api = await LocalApi.open(repo)
  const server = new ApiServer(api, { port: 0 })
  const url = await server.listen()
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
