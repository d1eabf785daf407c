/**
 * Resolving 8-byte digest prefixes to held pages (a peer pulling an image by prefix asks for
 * much of the store, a request at a time): from the page table when it is loaded, else from
 * the level index by a seek per prefix or one scan of their key range, whichever the cost
 * model says is cheaper.
 */
import type { AbortOptions } from '@libp2p/interface'
import { PAGE_KEYS_END, PAGE_PREFIX, VIEW } from './schema.ts'
import type { IndexDb } from './schema.ts'
import type { Packs } from './pack.ts'
import type { PageTable } from './page-table.ts'
import type { PageTableCache } from './page-table-cache.ts'

/** Index keys read per call while scanning. */
const SCAN_BATCH = 4096
/** CPU of one seek in the page index, and of one key read in a scan (measured on a 734k-page index: 68 µs, 0.9 µs). */
const SEEK_US = 70
const SCAN_KEY_US = 1
/** What a round trip to the thread pool may wait for when the pool is busy (fdatasyncs of other work). */
const POOL_WAIT_US = 250

/**
 * How to resolve `n` prefixes among the `keys` index keys their range holds: a seek each costs
 * `n` pool round trips, one scan reads every key of the range in batches. Scanning a large
 * index for a request of 256 prefixes took 0.7 s a request and stalled a source past its
 * peers' idle timeouts; seeking a small one costs more round trips than it saves.
 */
export function prefixLookup (n: number, keys: number): 'seek' | 'scan' {
  const seek = n * (SEEK_US + POOL_WAIT_US)
  const scan = keys * SCAN_KEY_US + Math.ceil(keys / SCAN_BATCH) * POOL_WAIT_US
  return seek < scan ? 'seek' : 'scan'
}

export interface PrefixSources {
  index: IndexDb
  packs: Packs
  tables: PageTableCache
}

/**
 * For each 8-byte prefix of `prefixes`, the digest of a held committed page that starts with
 * it, or undefined. The page table answers each prefix with one probe; when it is not loaded
 * its load starts in the background (never waited for here: it takes the store lock) and the
 * index answers meanwhile; it is released after PAGE_TABLE_IDLE_MS.
 */
export async function resolvePrefixes (from: PrefixSources, prefixes: Uint8Array, options: AbortOptions = {}): Promise<Array<Uint8Array | undefined>> {
  const n = Math.floor(prefixes.byteLength / 8)
  const table = from.tables.borrow()
  if (table != null) {
    try {
      return inTable(table, prefixes, n)
    } finally {
      from.tables.release()
    }
  }
  from.tables.loadInBackground()
  return inIndex(from, prefixes, n, options)
}

function inTable (table: PageTable, prefixes: Uint8Array, n: number): Array<Uint8Array | undefined> {
  const out = new Array<Uint8Array | undefined>(n)
  for (let i = 0; i < n; i++) {
    const digest = new Uint8Array(32)
    out[i] = table.findPrefix(prefixes, i * 8, digest) ? digest : undefined
  }
  return out
}

/** {@link resolvePrefixes} from level: a seek per prefix when they are few, else one scan of their key range. */
async function inIndex (from: PrefixSources, prefixes: Uint8Array, n: number, options: AbortOptions): Promise<Array<Uint8Array | undefined>> {
  const view = new DataView(prefixes.buffer, prefixes.byteOffset, n * 8)
  const asked = new BigUint64Array(n)
  for (let i = 0; i < n; i++) asked[i] = view.getBigUint64(i * 8)
  // distinct prefixes in key order (big-endian: numeric order is byte order), visited on one iterator
  const sorted = asked.slice().sort()
  const found = new Array<Uint8Array | undefined>(n)
  const skip = PAGE_PREFIX.byteLength
  const headOf = (key: Uint8Array): bigint => new DataView(key.buffer, key.byteOffset + skip, 8).getBigUint64(0)
  const it = from.index.db.keys<Uint8Array>({ gt: PAGE_PREFIX, lt: PAGE_KEYS_END, keyEncoding: VIEW })
  try {
    // pages held between the first and the last prefix asked, if digests are uniform
    const span = n === 0 ? 0 : Number(sorted[n - 1] - sorted[0]) / 2 ** 64
    if (prefixLookup(n, from.packs.livePages() * span) === 'seek') {
      // few prefixes in a large index: a seek each
      const target = Buffer.alloc(skip + 8)
      PAGE_PREFIX.copy(target)
      for (let j = 0; j < n; j++) {
        options.signal?.throwIfAborted()
        if (j > 0 && sorted[j] === sorted[j - 1]) continue
        target.writeBigUInt64BE(sorted[j], skip)
        it.seek(target)
        const key = await it.next()
        if (key != null && headOf(key) === sorted[j]) found[j] = new Uint8Array(key.subarray(skip, skip + 32))
      }
    } else {
      // many: one pass over that part of the index in batches, merged with the sorted prefixes
      const start = Buffer.alloc(skip + 8)
      PAGE_PREFIX.copy(start)
      start.writeBigUInt64BE(sorted[0] ?? 0n, skip)
      it.seek(start)
      let j = 0
      while (j < n) {
        options.signal?.throwIfAborted()
        const keys = await it.nextv(SCAN_BATCH)
        if (keys.length === 0) break
        for (const key of keys) {
          const head = headOf(key)
          while (j < n && sorted[j] < head) j++
          if (j < n && sorted[j] === head) found[j] = new Uint8Array(key.subarray(skip, skip + 32))
          if (j === n) break
        }
      }
    }
  } finally {
    await it.close()
  }
  // back to the order asked: the first of equal sorted prefixes holds the answer
  const out = new Array<Uint8Array | undefined>(n)
  for (let i = 0; i < n; i++) {
    let lo = 0
    let hi = n - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (sorted[mid] < asked[i]) lo = mid + 1
      else hi = mid
    }
    out[i] = found[lo]
  }
  return out
}
