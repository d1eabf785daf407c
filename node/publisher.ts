import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import type { Store } from '../store/index.ts'
import { DIGEST_LENGTH } from '../protocols/providers/index.ts'
import type { ProviderRecords } from '../protocols/providers/index.ts'
import { digestToCid } from '../store/page.ts'
import { DEFAULT_PUBLISH_BATCH, DEFAULT_PUBLISH_DELAY } from './constants.ts'

/** Digests per queue chunk, and so per provide call. */
const QUEUE_CHUNK = 16_384

const log = logger('memfabric:publisher')

/**
 * Announces the pages a node holds: everything once at start, then new pages in batches as the
 * store reports them. Dropped pages are simply not re-announced; their records expire.
 */
export class Publisher {
  private readonly store: Store
  private readonly providers: Pick<ProviderRecords, 'provide'>
  /**
   * Digests of pages waiting to be announced, packed 32 bytes each (a migration adds 10^5–10^6).
   * Whole digests: a record's placement is computed from the full CID; only 16 bytes of each
   * go on the wire (the providers service cuts them, `recordKey`).
   */
  private queue: Uint8Array[] = []
  private tail = new Uint8Array(0)
  private tailUsed = 0
  private timer?: ReturnType<typeof setTimeout>
  private running: Promise<void> = Promise.resolve()
  private readonly controller = new AbortController()
  /** Records announced since start. */
  published = 0

  constructor (store: Store, providers: Pick<ProviderRecords, 'provide'>) {
    this.store = store
    this.providers = providers
    this.onAdded = this.onAdded.bind(this)
  }

  start (): void {
    this.store.addEventListener('pages:added', this.onAdded as (evt: Event) => void)
    this.enqueue(async () => {
      const signal = this.controller.signal
      const result = await this.providers.provide(this.store.allPages({ signal, batchSize: DEFAULT_PUBLISH_BATCH }), { signal })
      this.published += result.records
      log('announced %d stored pages', result.records)
    })
  }

  /** Resolves when everything queued so far has been announced. */
  async flush (): Promise<void> {
    if (this.timer != null) {
      clearTimeout(this.timer)
      this.timer = undefined
      this.drain()
    }
    await this.running
  }

  async stop (): Promise<void> {
    this.store.removeEventListener('pages:added', this.onAdded as (evt: Event) => void)
    clearTimeout(this.timer)
    this.controller.abort()
    await this.running
  }

  private onAdded (evt: CustomEvent<CID[]>): void {
    for (const cid of evt.detail) {
      if (this.tailUsed === this.tail.byteLength) {
        if (this.tail.byteLength > 0) this.queue.push(this.tail)
        this.tail = new Uint8Array(DIGEST_LENGTH * QUEUE_CHUNK)
        this.tailUsed = 0
      }
      this.tail.set(cid.multihash.digest, this.tailUsed)
      this.tailUsed += DIGEST_LENGTH
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined
      this.drain()
    }, DEFAULT_PUBLISH_DELAY)
  }

  private drain (): void {
    if (this.tailUsed > 0) this.queue.push(this.tail.subarray(0, this.tailUsed))
    this.tail = new Uint8Array(0)
    this.tailUsed = 0
    const chunks = this.queue
    this.queue = []
    for (const chunk of chunks) {
      // CIDs are made just before they are announced, a chunk at a time
      this.enqueue(async () => {
        const batch: CID[] = []
        for (let at = 0; at < chunk.byteLength; at += DIGEST_LENGTH) batch.push(digestToCid(chunk.subarray(at, at + DIGEST_LENGTH)))
        const result = await this.providers.provide(batch, { signal: this.controller.signal })
        this.published += result.records
      })
    }
  }

  private enqueue (task: () => Promise<void>): void {
    this.running = this.running.then(task).catch(err => {
      if (!this.controller.signal.aborted) log.error('publishing failed - %e', err)
    })
  }
}
