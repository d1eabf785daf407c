/**
 * The control API's credential: a random bearer token the daemon writes to `<repo>/api.token`,
 * readable only by its owner (mode 0600). A CLI command reads it from there and sends it as
 * `Authorization: Bearer …`; a process that cannot read the repository cannot call the API.
 *
 * Why a token file and not a unix socket in the repository: the status page and Prometheus
 * reach the API over HTTP, and a browser cannot open a unix socket. With one transport, one
 * check covers every caller.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { open, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'

/** File in the repository holding the running daemon's API token. */
export const API_TOKEN_FILE = 'api.token'

/** Random bytes in a generated token (256 bits). */
const TOKEN_BYTES = 32

/** A fresh random token (base64url, URL- and header-safe). */
export function createApiToken (): string {
  return randomBytes(TOKEN_BYTES).toString('base64url')
}

/**
 * Write `token` to `<repoDir>/api.token` with mode 0600. Written to a new temporary file
 * (created 0600, never an existing one) and renamed over the old: there is no moment where
 * the token sits in a file with other permissions.
 */
export async function writeApiToken (repoDir: string, token: string): Promise<void> {
  const file = join(repoDir, API_TOKEN_FILE)
  const temp = `${file}.${process.pid}.tmp`
  await rm(temp, { force: true })
  const fh = await open(temp, 'wx', 0o600)
  try {
    await fh.writeFile(token + '\n')
  } finally {
    await fh.close()
  }
  await rename(temp, file)
}

/** The token a daemon left in `repoDir`, if any and readable. */
export async function readApiToken (repoDir: string): Promise<string | undefined> {
  const text = await readFile(join(repoDir, API_TOKEN_FILE), 'utf8').catch(() => '')
  const token = text.trim()
  return token !== '' ? token : undefined
}

/** Remove the token file if it still holds `token` (a newer daemon's is left alone). */
export async function removeApiToken (repoDir: string, token: string): Promise<void> {
  if (await readApiToken(repoDir) === token) await rm(join(repoDir, API_TOKEN_FILE), { force: true })
}

/** `Authorization` header value carries `token`; constant time in the header's content. */
export function bearerMatches (header: string | undefined, token: string): boolean {
  if (header == null || !header.startsWith('Bearer ')) return false
  // equal-length digests: timingSafeEqual needs equal lengths, and the length leaks nothing
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest()
  return timingSafeEqual(digest(header.slice('Bearer '.length)), digest(token))
}
