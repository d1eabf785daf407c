/**
 * The full digests of the pages a thin pull finds, spilled to a scratch file as they arrive
 * (`[u32 index][32-byte digest]` records, appended in arrival order) instead of 32 bytes a
 * page in memory for the whole pull; read back once, at the end, to cut the manifest chunks.
 * The file is unlinked as soon as it is open: a process killed mid-pull leaves nothing behind.
 */
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FileHandle } from 'node:fs/promises'

const RECORD_BYTES = 4 + 32
/** Records buffered before a write. */
const CHUNK_RECORDS = 2048
/** Bytes read back per read. */
const READ_BYTES = RECORD_BYTES * 32 * 1024

export class DigestLog {
  private readonly file: FileHandle
  private chunk = Buffer.allocUnsafe(CHUNK_RECORDS * RECORD_BYTES)
  private used = 0
  private size = 0
  private writing: Promise<void> = Promise.resolve()
  private failure?: unknown

  private constructor (file: FileHandle) {
    this.file = file
  }

  static async create (): Promise<DigestLog> {
    const dir = await mkdtemp(join(tmpdir(), 'memfabric-pull-'))
    try {
      return new DigestLog(await open(join(dir, 'digests'), 'w+'))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }

  /** Record that page `k` of the index has digest `digest`. */
  append (k: number, digest: Uint8Array): void {
    this.chunk.writeUInt32BE(k, this.used)
    this.chunk.set(digest, this.used + 4)
    this.used += RECORD_BYTES
    if (this.used === this.chunk.byteLength) this.write()
  }

  private write (): void {
    if (this.used === 0) return
    const data = this.chunk.subarray(0, this.used)
    const at = this.size
    this.size += this.used
    this.chunk = Buffer.allocUnsafe(CHUNK_RECORDS * RECORD_BYTES)
    this.used = 0
    this.writing = this.writing.then(async () => {
      if (this.failure != null) return
      let done = 0
      while (done < data.byteLength) {
        const { bytesWritten } = await this.file.write(data, done, data.byteLength - done, at + done)
        done += bytesWritten
      }
    }).catch(err => { this.failure ??= err })
  }

  /** Call `each` with every record appended so far. */
  async replay (each: (k: number, digest: Uint8Array) => void): Promise<void> {
    this.write()
    await this.writing
    if (this.failure != null) throw this.failure
    const buf = Buffer.allocUnsafe(READ_BYTES)
    for (let at = 0; at < this.size;) {
      const want = Math.min(READ_BYTES, this.size - at)
      for (let got = 0; got < want;) {
        const { bytesRead } = await this.file.read(buf, got, want - got, at + got)
        if (bytesRead === 0) throw new Error(`digest log ends at ${at + got} of ${this.size} bytes`)
        got += bytesRead
      }
      for (let o = 0; o < want; o += RECORD_BYTES) each(buf.readUInt32BE(o), buf.subarray(o + 4, o + RECORD_BYTES))
      at += want
    }
  }

  /** Close the file (its space is freed then). */
  async close (): Promise<void> {
    await this.writing
    await this.file.close().catch(() => {})
  }
}
