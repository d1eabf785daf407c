/**
 * The fabric key: a 256-bit secret kept in `<repo>/fabric.key` (swarm.key text format).
 * It is bound into every noise handshake (see `fabricPrologue` in libp2p.ts), so peers without
 * the same key cannot complete a connection and nothing of memfabric — DHT, pages, presence —
 * is reachable from outside the fabric. `memfabric init` creates one;
 * `memfabric init --fabric-key FILE` joins an existing fabric.
 */
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { FabricKeyError } from './errors.ts'

export const FABRIC_KEY_FILE = 'fabric.key'
const HEADER = '/key/swarm/psk/1.0.0/\n/base16/\n'

export { FabricKeyError }

/** A new key in the swarm.key text format. */
export function createFabricKey (): Uint8Array {
  return new TextEncoder().encode(HEADER + randomBytes(32).toString('hex'))
}

/** Check a key file's format; returns its bytes. */
export function parseFabricKey (bytes: Uint8Array, source: string): Uint8Array {
  const text = new TextDecoder().decode(bytes)
  if (!text.startsWith(HEADER) || !/^[0-9a-f]{64}\s*$/i.test(text.slice(HEADER.length))) {
    throw new FabricKeyError(`${source} is not a fabric key (expected a /key/swarm/psk/1.0.0/ base16 key)`)
  }
  return bytes
}

export async function readFabricKeyFile (path: string): Promise<Uint8Array> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (err: any) {
    throw new FabricKeyError(`cannot read fabric key ${path}: ${err.code ?? err.message}`)
  }
  return parseFabricKey(bytes, path)
}

/** The repository's fabric key, or undefined if it has none (an open fabric). */
export async function readRepoFabricKey (repoPath: string): Promise<Uint8Array | undefined> {
  const path = join(repoPath, FABRIC_KEY_FILE)
  try {
    return parseFabricKey(await readFile(path), path)
  } catch (err: any) {
    if (err.code === 'ENOENT') return undefined
    throw err
  }
}

/** Store a key in the repository, readable by its owner only. */
export async function writeRepoFabricKey (repoPath: string, key: Uint8Array): Promise<void> {
  const path = join(repoPath, FABRIC_KEY_FILE)
  await writeFile(path, key, { mode: 0o600 })
  await chmod(path, 0o600)
}
