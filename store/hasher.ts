/**
 * A small pool of worker threads that hash page buffers; buffers are transferred, not copied.
 * With zero workers it hashes on the calling thread.
 */
import { Worker } from 'node:worker_threads'
import { logger } from '@libp2p/logger'
import { hashPageBuffer } from './hash-pages.ts'
import type { HashRequest, HashResponse } from './hash-pages.ts'

const log = logger('memfabric:store:hasher')

export interface HashResult {
  bytes: Uint8Array
  digests: Uint8Array
  zero: Uint8Array
}

interface Job {
  req: HashRequest
  resolve(res: HashResponse): void
  reject(err: Error): void
}

export class Hasher {
  private readonly size: number
  private workers: Worker[] = []
  private idle: Worker[] = []
  private readonly queue: Job[] = []
  private readonly running = new Map<Worker, Job>()
  private nextId = 0
  private closed = false

  constructor (workers: number) {
    this.size = workers
  }

  /**
   * Hash the slots of `bytes` (which must own its whole ArrayBuffer when workers are used: it is
   * transferred away and back). Resolves with the buffer returned.
   */
  async hash (bytes: Uint8Array, pageSize: number, lengths?: Uint32Array): Promise<HashResult> {
    const owned = bytes.byteOffset === 0 && bytes.buffer instanceof ArrayBuffer
    const req: HashRequest = { id: this.nextId++, buffer: bytes.buffer as ArrayBuffer, length: bytes.byteLength, pageSize, lengths }
    if (this.size === 0 || !owned || this.closed) {
      const res = hashPageBuffer({ ...req, buffer: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer })
      return { bytes, digests: res.digests, zero: res.zero }
    }
    const length = bytes.byteLength
    this.start()
    const res = await new Promise<HashResponse>((resolve, reject) => {
      this.queue.push({ req, resolve, reject })
      this.pump()
    })
    return { bytes: new Uint8Array(res.buffer, 0, length), digests: res.digests, zero: res.zero }
  }

  private start (): void {
    if (this.workers.length > 0) return
    for (let i = 0; i < this.size; i++) {
      const w = new Worker(new URL('./hash-worker.ts', import.meta.url))
      w.unref()
      w.on('message', (res: HashResponse) => {
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
      const transfer: ArrayBuffer[] = [job.req.buffer]
      w.postMessage(job.req, transfer)
    }
  }

  async close (): Promise<void> {
    this.closed = true
    const workers = this.workers
    this.workers = []
    this.idle = []
    await Promise.all(workers.map(async w => w.terminate()))
  }
}
