/**
 * Manifest blocks as files, `blocks/<cid>`, beside the page packs. They used to sit in the
 * page index's LevelDB (~36 bytes a page of every image), where LevelDB maps every table it
 * reads: reading an image's manifest (pin, export) kept its blocks resident in the daemon.
 * Files are read through the page cache instead.
 *
 * A block is written to a temporary name and renamed, without a sync; `sync()` makes every
 * block written since durable (data, then the directory) and runs before anything that
 * refers to them is committed (a pin, an import's batch). A block torn by a crash before
 * its sync fails verification on read and is removed, so it reads as absent.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import { syncDir } from './export.ts'
import { verifyBlock } from './manifest.ts'

const log = logger('memfabric:store:blocks')

/** Files synced at once (the journal commits concurrent syncs together). */
const SYNC_CONCURRENCY = 32
const TMP_SUFFIX = '.tmp'

export class BlockFiles {
  readonly dir: string
  /** Blocks written since the last sync. */
  private readonly unsynced = new Set<string>()

  constructor (dir: string) {
    this.dir = dir
  }

  /** Create the directory and remove temporary files left by a crash. */
  async open (): Promise<void> {
    await mkdir(this.dir, { recursive: true })
    for (const name of await readdir(this.dir)) {
      if (name.endsWith(TMP_SUFFIX)) await rm(join(this.dir, name), { force: true })
    }
  }

  /** The block's bytes, verified against its CID; undefined when absent or corrupt (then removed). */
  async get (cid: CID): Promise<Uint8Array | undefined> {
    const key = cid.toString()
    let bytes: Uint8Array
    try {
      bytes = await readFile(join(this.dir, key))
    } catch (err: any) {
      if (err.code === 'ENOENT') return undefined
      throw err
    }
    if (verifyBlock(cid, bytes)) return bytes
    log.error('block %s does not match its CID (torn by a crash?): removed', key)
    await rm(join(this.dir, key), { force: true })
    this.unsynced.delete(key)
    return undefined
  }

  async has (cid: CID): Promise<boolean> {
    return (await this.get(cid)) != null
  }

  /** Write a verified block (not yet durable: see {@link sync}). */
  async put (cid: CID, bytes: Uint8Array): Promise<void> {
    const key = cid.toString()
    const tmp = join(this.dir, `${key}.${randomBytes(4).toString('hex')}${TMP_SUFFIX}`)
    await writeFile(tmp, bytes)
    await rename(tmp, join(this.dir, key))
    this.unsynced.add(key)
  }

  /** Make every block written since the last sync durable. */
  async sync (): Promise<void> {
    if (this.unsynced.size === 0) return
    const keys = [...this.unsynced]
    for (let i = 0; i < keys.length; i += SYNC_CONCURRENCY) {
      await Promise.all(keys.slice(i, i + SYNC_CONCURRENCY).map(async key => {
        let file
        try {
          file = await open(join(this.dir, key), 'r')
        } catch (err: any) {
          if (err.code === 'ENOENT') return // removed since (gc)
          throw err
        }
        try {
          await file.datasync()
        } finally {
          await file.close()
        }
      }))
    }
    await syncDir(this.dir)
    for (const key of keys) this.unsynced.delete(key)
  }

  /** CIDs of the blocks held. */
  async * keys (): AsyncGenerator<string> {
    for (const name of await readdir(this.dir)) {
      if (!name.endsWith(TMP_SUFFIX)) yield name
    }
  }

  /** Remove blocks (durably: the directory is synced). */
  async delete (keys: string[]): Promise<void> {
    if (keys.length === 0) return
    for (const key of keys) {
      await unlink(join(this.dir, key)).catch((err: any) => { if (err.code !== 'ENOENT') throw err })
      this.unsynced.delete(key)
    }
    await syncDir(this.dir)
  }
}
