/**
 * Records of earlier versions, converted or dropped by `RecordStore.load()` before it scans:
 *
 * - `q` (the previous layout): a key's providers in one value, `[u32 peer number][f64 expiry]`
 *   per provider under the 16-byte record key — converted to entries of `e`. Lists under
 *   32-byte keys (1.0.0 stored whole digests) are dropped.
 * - `r` (the layout before it, peer ids in the values): deleted; their providers re-announce
 *   everything at start.
 *
 * Both run at every load and cost one empty read each once done.
 */
import type { AbortOptions } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { KEY_LENGTH } from './constants.ts'
import { ENTRY_KEY_LENGTH, EXPIRY_LENGTH, LOAD_CHUNK, PEER_NUMBER_LENGTH, rawSublevel, readExpiry } from './record-layout.ts'
import type { Db, Locked, Sub } from './record-layout.ts'

const log = logger('memfabric:providers:store')

/** An entry of the previous layout's lists: `[u32 peer number][f64 expiry]`. */
const LIST_ENTRY_LENGTH = PEER_NUMBER_LENGTH + EXPIRY_LENGTH

export interface RecordStoreUpgradeInit {
  /** The database the record store's sublevels are made in. */
  db: Db
  /** The current layout's entries (`e`). */
  entries: Sub
  /** The store's write lock: a conversion must not interleave with an ADD. */
  locked: Locked
}

export class RecordStoreUpgrade {
  /** Records of the previous layout, converted to entries. */
  private readonly lists: Sub
  /** Records of the layout before it, deleted. */
  private readonly legacy: Sub
  private readonly entries: Sub
  private readonly locked: Locked

  constructor (init: RecordStoreUpgradeInit) {
    this.lists = rawSublevel(init.db, 'q')
    this.legacy = rawSublevel(init.db, 'r')
    this.entries = init.entries
    this.locked = init.locked
  }

  /** Convert the previous layout, then delete the one before. */
  async run (options?: AbortOptions): Promise<void> {
    await this.convertLists(options)
    await this.dropLegacy(options)
  }

  /**
   * Turn the previous layout's lists (`q`) into entries, a chunk at a time; each chunk's puts
   * and deletes are one batch, so a crash midway leaves every record in one layout or the other.
   */
  private async convertLists (options?: AbortOptions): Promise<void> {
    let converted = 0
    while (true) {
      options?.signal?.throwIfAborted()
      // under the write lock: an ADD meanwhile may have refreshed an entry a list still has
      const done = await this.locked(async () => {
        const chunk = await this.lists.iterator({ limit: LOAD_CHUNK }).all()
        if (chunk.length === 0) return true
        const keys: Buffer[] = []
        const expiries: Buffer[] = []
        for (const [key, list] of chunk) {
          if (key.byteLength !== KEY_LENGTH) continue // 1.0.0 stored whole digests: dropped
          for (let at = 0; at + LIST_ENTRY_LENGTH <= list.byteLength; at += LIST_ENTRY_LENGTH) {
            const entry = Buffer.allocUnsafe(ENTRY_KEY_LENGTH)
            entry.set(key, 0)
            entry.writeUInt32BE(list.readUInt32BE(at), KEY_LENGTH)
            keys.push(entry)
            expiries.push(list.subarray(at + PEER_NUMBER_LENGTH, at + LIST_ENTRY_LENGTH))
          }
        }
        const current = keys.length > 0 ? await this.entries.getMany(keys) : []
        // the root's batch: one atomic write across both sublevels
        const batch = this.entries.db.batch()
        for (const [key] of chunk) batch.del(key, { sublevel: this.lists })
        keys.forEach((key, i) => {
          if (readExpiry(current[i]) < readExpiry(expiries[i])) batch.put(key, expiries[i], { sublevel: this.entries })
        })
        await batch.write()
        converted += chunk.length
        return false
      })
      if (done) break
    }
    if (converted > 0) log('converted %d provider records of the previous layout', converted)
  }

  /** Delete records of the layout before the previous one, a chunk at a time. */
  private async dropLegacy (options?: AbortOptions): Promise<void> {
    let dropped = 0
    while (true) {
      options?.signal?.throwIfAborted()
      const keys = await this.legacy.keys({ limit: LOAD_CHUNK }).all()
      if (keys.length === 0) break
      await this.legacy.batch(keys.map(key => ({ type: 'del' as const, key })))
      dropped += keys.length
    }
    if (dropped > 0) log('deleted %d provider records of an earlier version', dropped)
  }
}
