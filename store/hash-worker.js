/**
 * Worker thread body of the hasher: SHA-256 and zero test of the pages of a shared buffer,
 * written into the buffer's shared digest and zero arrays, and export batches. Plain
 * JavaScript (see page-jobs.js for why).
 */
import { parentPort } from 'node:worker_threads'
import { hashPagesInto, runExportBatch } from './page-jobs.js'

/** @type {Map<number, { data: Uint8Array, out: import('./page-jobs.d.ts').HashOutput }>} */
const buffers = new Map()

parentPort?.on('message', (/** @type {import('./page-jobs.d.ts').WorkerRequest} */ msg) => {
  if (msg.type === 'register') {
    buffers.set(msg.id, { data: new Uint8Array(msg.data), out: { digests: new Uint8Array(msg.digests), zero: new Uint8Array(msg.zero) } })
    return
  }
  const b = buffers.get(msg.id)
  if (b == null) throw new Error(`unknown shared buffer ${msg.id}`)
  /** @type {import('./page-jobs.d.ts').WorkerResponse} */
  const res = msg.type === 'export'
    ? { req: msg.req, slots: msg.plan.lengths.length, result: runExportBatch(b.data, b.out, msg.pageSize, msg.plan) }
    : { req: msg.req, slots: hashPagesInto(b.data, msg.length, msg.pageSize, b.out, msg.lengths) }
  parentPort?.postMessage(res)
})
