/** Fixtures shared by the migration tests. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ExecutionContext } from 'ava'

export const MiB = 1024 * 1024

/** A temp directory `memfabric-<name>-…`, removed when the test ends. */
export async function tempDir (t: ExecutionContext, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `memfabric-${name}-`))
  t.teardown(async () => rm(dir, { recursive: true, force: true }))
  return dir
}
