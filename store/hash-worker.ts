/**
 * Worker thread body of the hasher: SHA-256 and zero test of every page of a buffer.
 */
import { parentPort } from 'node:worker_threads'
import { hashPageBuffer } from './hash-pages.ts'
import type { HashRequest, HashResponse } from './hash-pages.ts'

parentPort?.on('message', (req: HashRequest) => {
  const res: HashResponse = hashPageBuffer(req)
  parentPort?.postMessage(res, [res.buffer, res.digests.buffer as ArrayBuffer, res.zero.buffer as ArrayBuffer])
})
