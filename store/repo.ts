/**
 * A repository directory: `config.json` (identity, site, addresses), `repo.lock`, and the
 * page store (`index/` level database, `packs/` pack files).
 */
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { logger } from '@libp2p/logger'
import type { PrivateKey } from '@libp2p/interface'
import { RepoCorruptError, RepoExistsError, RepoNotFoundError } from './errors.ts'
import { acquireLock } from './lock.ts'
import { LevelPackStore } from './store.ts'
import type { StoreOptions } from './options.ts'
import type { RepoConfig, Store } from './index.ts'

const log = logger('memfabric:store:repo')

export const CONFIG_FILE = 'config.json'
export const DEFAULT_SITE = 'default'
/** Listen address a new repository is configured with: the fabric's port 4001, on loopback. */
export const DEFAULT_LISTEN = ['/ip4/127.0.0.1/tcp/4001']
export const DEFAULT_API = '/ip4/127.0.0.1/tcp/5001'

export interface RepoInitOptions {
  /** Default {@link DEFAULT_SITE}. */
  site?: string
  /** Default {@link DEFAULT_LISTEN}. */
  listen?: string[]
  /** Default {@link DEFAULT_API}. */
  api?: string
  /** Default none. */
  bootstrap?: string[]
  /** LAN discovery by mDNS; default unset: on when listening beyond loopback (node/discovery.ts). */
  mdns?: boolean
}

/** The libp2p private key stored in a config. */
export function loadPrivateKey (config: RepoConfig): PrivateKey {
  return privateKeyFromProtobuf(Buffer.from(config.identity.privateKey, 'base64'))
}

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

export class Repo {
  readonly path: string
  config: RepoConfig
  readonly store: Store
  private readonly release: () => Promise<void>
  private readonly levelStore: LevelPackStore
  private closing?: Promise<void>

  private constructor (path: string, config: RepoConfig, store: LevelPackStore, release: () => Promise<void>) {
    this.path = path
    this.config = config
    this.store = store
    this.levelStore = store
    this.release = release
  }

  /** Create a repository with a new Ed25519 identity and an empty store. */
  static async init (dir: string, options: RepoInitOptions = {}): Promise<Repo> {
    const path = resolve(dir)
    if (await exists(join(path, CONFIG_FILE))) {
      throw new RepoExistsError(`a memfabric repository already exists at ${path}`)
    }
    await mkdir(path, { recursive: true })
    const key = await generateKeyPair('Ed25519')
    const config: RepoConfig = {
      identity: {
        peerId: peerIdFromPrivateKey(key).toString(),
        privateKey: Buffer.from(privateKeyToProtobuf(key)).toString('base64')
      },
      site: options.site ?? DEFAULT_SITE,
      addresses: { listen: options.listen ?? [...DEFAULT_LISTEN], api: options.api ?? DEFAULT_API },
      bootstrap: options.bootstrap ?? [],
      ...(options.mdns != null ? { discovery: { mdns: options.mdns } } : {})
    }
    await writeConfig(path, config)
    log('initialised repository %s as %s', path, config.identity.peerId)
    return Repo.open(path)
  }

  /** Open an existing repository and take its lock. */
  static async open (dir: string, options: StoreOptions = {}): Promise<Repo> {
    const path = resolve(dir)
    const config = await Repo.readConfig(path)
    const release = await acquireLock(path)
    try {
      const store = await LevelPackStore.open(path, options)
      return new Repo(path, config, store, release)
    } catch (err) {
      await release()
      throw err
    }
  }

  /** Read `config.json` without taking the lock. */
  static async readConfig (dir: string): Promise<RepoConfig> {
    const path = resolve(dir)
    let text: string
    try {
      text = await readFile(join(path, CONFIG_FILE), 'utf8')
    } catch (err: any) {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') {
        throw new RepoNotFoundError(`no memfabric repository at ${path}; run \`memfabric init\``)
      }
      throw err
    }
    try {
      return JSON.parse(text) as RepoConfig
    } catch (err) {
      throw new RepoCorruptError(`config ${join(path, CONFIG_FILE)} is not valid JSON`, { cause: err })
    }
  }

  async saveConfig (config: RepoConfig): Promise<void> {
    await writeConfig(this.path, config)
    this.config = config
  }

  /** Close the store and release the lock. Idempotent. */
  async close (): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.levelStore.close()
      } finally {
        await this.release()
      }
    })()
    return this.closing
  }
}

async function writeConfig (path: string, config: RepoConfig): Promise<void> {
  const file = join(path, CONFIG_FILE)
  await writeFile(`${file}.tmp`, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 })
  await rename(`${file}.tmp`, file)
}
