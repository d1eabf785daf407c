/**
 * Helpers for end-to-end tests of the real `memfabric` CLI: spawn `cli/bin.ts` with the
 * running Node, temp repos and files cleaned up by the test's teardown.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ExecutionContext } from 'ava'

export const BIN = fileURLToPath(new URL('../../cli/bin.ts', import.meta.url))
export const PAGE = 4096

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Environment for a child: no repo or API token from the caller's shell, no debug output. */
export function childEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env }
  delete env.MEMFABRIC_REPO
  delete env.MEMFABRIC_API_TOKEN
  delete env.DEBUG
  return { ...env, ...extra }
}

/** Run `memfabric ...args` to completion (in `cwd`, default this process's). */
export async function cli (args: string[], options: { env?: Record<string, string>, cwd?: string } = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [BIN, ...args], { env: childEnv(options.env), cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (c, s) => { resolve([c, s]) })
  })
  return { code, signal, stdout, stderr }
}

/** Run and require exit 0; parse stdout as JSON when `--json` is among the args. */
export async function ok (t: ExecutionContext, args: string[], options: { cwd?: string } = {}): Promise<any> {
  const r = await cli(args, options)
  if (r.code !== 0) {
    t.fail(`memfabric ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
  }
  return args.includes('--json') ? JSON.parse(r.stdout) : r.stdout
}

/** A temp directory removed after the test. */
export async function tempDir (t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-cli-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

/** An initialised repository in its own temp dir; returns its path. */
export async function tempRepo (t: ExecutionContext): Promise<string> {
  const dir = await tempDir(t)
  const repo = join(dir, 'repo')
  await ok(t, ['init', '--repo', repo, '--site', 'test'])
  return repo
}

/**
 * A raw image of `pages` full pages plus a `tail`-byte partial page: every 4th page zero,
 * every page ≡ 1 (mod 4) the same bytes, the rest unique (from `seed` bytes).
 */
export function makeImage (pages: number, tail: number): { bytes: Buffer, zeroPages: number, distinctPages: number } {
  const bytes = Buffer.alloc(pages * PAGE + tail)
  const dup = randomBytes(PAGE)
  let zeroPages = 0
  let unique = 0
  let dupSeen = false
  for (let i = 0; i < pages; i++) {
    if (i % 4 === 0) {
      zeroPages++
    } else if (i % 4 === 1) {
      dup.copy(bytes, i * PAGE)
      dupSeen = true
    } else {
      randomBytes(PAGE).copy(bytes, i * PAGE)
      unique++
    }
  }
  if (tail > 0) {
    randomBytes(tail).copy(bytes, pages * PAGE)
    unique++
  }
  return { bytes, zeroPages, distinctPages: unique + (dupSeen ? 1 : 0) }
}

/** Write `bytes` to `dir/name` and return the path. */
export async function writeTemp (dir: string, name: string, bytes: Uint8Array | string): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, bytes)
  return path
}

/** Poll `check` until it is true or `ms` pass. */
export async function waitFor (check: () => Promise<boolean> | boolean, ms = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`)
    }
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}
