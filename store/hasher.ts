/**
 * A small pool of worker threads that hash pages. Page data lives in shared buffers handed out
 * by `acquire` and registered with every worker once, so a hash request is a few numbers:
 * moving 8 MiB ArrayBuffers between threads for every chunk kept the garbage collector busy.
 * With zero workers it hashes on the calling thread.
 */
import { Worker } from 'node:worker_threads'
import { logger } from '@libp2p/logger'
import { hashPagesInto, runExportBatch } from './page-jobs.js'
import type { ExportBatchResult, ExportPlan, WorkerRequest, WorkerResponse } from './page-jobs.js'

const log = logger('memfabric:store:hasher')

/** Idle time after which the workers and shared buffers are released (ms). */
export const HASHER_IDLE_MS = 10_000

/** A shared page buffer with room for the digests and zero flags of its slots. */
export interface SharedPages {
  readonly id: number
  readonly bytes: Buffer
  readonly digests: Uint8Array
  readonly zero: Uint8Array
}

export interface HashResult {
  /** Digests of the slots (32 bytes each), a copy the caller may keep. */
  digests: Uint8Array
  /** 1 for an all-zero slot. */
  zero: Uint8Array
}

interface Job {
  msg: WorkerRequest & { type: 'hash' | 'export' }
  resolve(res: WorkerResponse): void
  reject(err: Error): void
}

export class Hasher {
  private readonly size: number
  private workers: Worker[] = []
  private idle: Worker[] = []
  private readonly queue: Job[] = []
  private readonly running = new Map<Worker, Job>()
  private readonly free = new Map<number, SharedPages[]>()
  private readonly registered: SharedPages[] = []
  private nextId = 0
  private nextReq = 0
  private closed = false
  private idleTimer?: ReturnType<typeof setTimeout>

  constructor (workers: number) {
    this.size = workers
  }

  /** A shared buffer of at least `bytes` bytes (pages of `pageSize`); give it back with `release`. */
  acquire (bytes: number, pageSize: number): SharedPages {
    clearTimeout(this.idleTimer)
    const list = this.free.get(bytes)
    const got = list?.pop()
    if (got != null) return got
    const slots = Math.ceil(bytes / pageSize)
    const data = new SharedArrayBuffer(bytes)
    const digests = new SharedArrayBuffer(slots * 32)
    const zero = new SharedArrayBuffer(slots)
    const buf: SharedPages = { id: this.nextId++, bytes: Buffer.from(data), digests: new Uint8Array(digests), zero: new Uint8Array(zero) }
    this.registered.push(buf)
    for (const w of this.workers) this.register(w, buf)
    return buf
  }

  release (buf: SharedPages): void {
    const list = this.free.get(buf.bytes.byteLength) ?? []
    list.push(buf)
    this.free.set(buf.bytes.byteLength, list)
    if (this.idleNow()) {
      clearTimeout(this.idleTimer)
      this.idleTimer = setTimeout(() => { this.trim() }, HASHER_IDLE_MS)
      this.idleTimer.unref()
    }
  }

  private idleNow (): boolean {
    let free = 0
    for (const list of this.free.values()) free += list.length
    return free === this.registered.length && this.running.size === 0 && this.queue.length === 0
  }

  /**
   * Give back the shared buffers and stop the workers once nothing used them for
   * HASHER_IDLE_MS: a daemon between imports and exports should not keep tens of MB of
   * buffers and two isolates. The next use starts them again.
   */
  trim (): void {
    if (!this.idleNow()) return
    const workers = this.workers
    this.workers = []
    this.idle = []
    this.registered.length = 0
    this.free.clear()
    for (const w of workers) w.terminate().catch(() => {})
    log('hash workers and buffers released after %d ms idle', HASHER_IDLE_MS)
  }

  private register (w: Worker, buf: SharedPages): void {
    const msg: WorkerRequest = { type: 'register', id: buf.id, data: buf.bytes.buffer as SharedArrayBuffer, digests: buf.digests.buffer as SharedArrayBuffer, zero: buf.zero.buffer as SharedArrayBuffer }
    w.postMessage(msg)
  }

  /** Hash the slots of `buf.bytes[0, length)`; slot i is at i * pageSize, `lengths[i]` long if given. */
  async hash (buf: SharedPages, length: number, pageSize: number, lengths?: Uint32Array): Promise<HashResult> {
    let slots: number
    if (this.size === 0 || this.closed) {
      slots = hashPagesInto(buf.bytes, length, pageSize, buf, lengths)
    } else {
      this.start()
      const msg = { type: 'hash' as const, req: this.nextReq++, id: buf.id, length, pageSize, lengths }
      slots = (await this.submit(msg)).slots
    }
    return { digests: buf.digests.slice(0, slots * 32), zero: buf.zero.slice(0, slots) }
  }

  /** Run a planned export batch on `buf` (see `runExportBatch` in page-jobs.js) on a worker, or on this thread. */
  async exportBatch (buf: SharedPages, pageSize: number, plan: ExportPlan, inline = false): Promise<ExportBatchResult> {
    if (inline || this.size === 0 || this.closed) return runExportBatch(buf.bytes, buf, pageSize, plan)
    this.start()
    const res = await this.submit({ type: 'export' as const, req: this.nextReq++, id: buf.id, pageSize, plan })
    return res.result ?? {}
  }

  private async submit (msg: Job['msg']): Promise<WorkerResponse> {
    return new Promise<WorkerResponse>((resolve, reject) => {
      this.queue.push({ msg, resolve, reject })
      this.pump()
    })
  }

  private start (): void {
    if (this.workers.length > 0) return
    for (let i = 0; i < this.size; i++) {
      const w = new Worker(new URL('./hash-worker.js', import.meta.url))
      w.unref()
      w.on('message', (res: WorkerResponse) => {
        const job = this.running.get(w)
        this.running.delete(w)
        this.idle.push(w)
        job?.resolve(res)
        this.pump()
      })
      w.on('error', (err) => {
        log.error('hash worker failed: %e', err)
        const job = this.running.get(w)
        this.running.delete(w)
        this.workers = this.workers.filter(x => x !== w)
        job?.reject(err)
      })
      for (const buf of this.registered) this.register(w, buf)
      this.workers.push(w)
      this.idle.push(w)
    }
  }

  private pump (): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()
      const job = this.queue.shift()
      if (w == null || job == null) return
      this.running.set(w, job)
      w.postMessage(job.msg)
    }
    if (this.workers.length === 0 && this.queue.length > 0) {
      // every worker died: finish on this thread
      for (const job of this.queue.splice(0)) job.reject(new Error('hash workers failed'))
    }
  }

  async close (): Promise<void> {
    this.closed = true
    clearTimeout(this.idleTimer)
    const workers = this.workers
    this.workers = []
    this.idle = []
    for (const job of this.queue.splice(0)) job.reject(new Error('hasher closed'))
    await Promise.all(workers.map(async w => w.terminate()))
  }
}
