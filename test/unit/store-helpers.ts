/**
 * Fixtures for the store tests: temporary repositories and files, seeded page data, and a
 * builder of ELF64 core files with unaligned PT_LOAD segments.
 */
import { createCipheriv, createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ExecutionContext } from 'ava'
import { Repo } from '../../store/repo.ts'
import type { StoreOptions } from '../../store/options.ts'

export const PAGE = 4096

/** A temp directory removed when the test ends. */
export async function tempDir (t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'memfabric-store-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

/** A fresh repository in a temp dir, closed when the test ends. */
export async function tempRepo (t: ExecutionContext, options: StoreOptions = {}): Promise<{ repo: Repo, dir: string, tmp: string }> {
  const tmp = await tempDir(t)
  const dir = join(tmp, 'repo')
  await (await Repo.init(dir)).close()
  const repo = await Repo.open(dir, options)
  t.teardown(async () => { await repo.close() })
  return { repo, dir, tmp }
}

/** Deterministic pseudo-random bytes for `seed`. */
export function seeded (seed: string, n: number): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16)
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n))
}

/** A page of seeded random bytes. */
export function page (seed: string): Buffer {
  return seeded(seed, PAGE)
}

export interface ElfSegment {
  /** File offset of the segment's bytes (need not be page aligned). */
  offset: number
  data: Buffer
}

/**
 * An ELF64 little-endian ET_CORE file: header, program headers (a PT_NOTE and one PT_LOAD per
 * segment), note bytes, then the segments at the offsets asked for (gaps are filled with 0xee).
 */
export function buildElfCore (segments: ElfSegment[], note = Buffer.from('CORE\0notes of a test core')): Buffer {
  const phnum = segments.length + 1
  const phoff = 64
  const noteOff = phoff + phnum * 56
  let size = noteOff + note.length
  for (const s of segments) size = Math.max(size, s.offset + s.data.length)
  const out = Buffer.alloc(size, 0xee)
  out.fill(0, 0, noteOff)
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]).copy(out, 0)
  out.writeUInt16LE(4, 16) // ET_CORE
  out.writeUInt16LE(62, 18) // EM_X86_64
  out.writeUInt32LE(1, 20)
  out.writeBigUInt64LE(BigInt(phoff), 32)
  out.writeUInt16LE(64, 52)
  out.writeUInt16LE(56, 54)
  out.writeUInt16LE(phnum, 56)
  const ph = (i: number, type: number, offset: number, filesz: number, vaddr: number): void => {
    const at = phoff + i * 56
    out.writeUInt32LE(type, at)
    out.writeUInt32LE(6, at + 4)
    out.writeBigUInt64LE(BigInt(offset), at + 8)
    out.writeBigUInt64LE(BigInt(vaddr), at + 16)
    out.writeBigUInt64LE(BigInt(filesz), at + 32)
    out.writeBigUInt64LE(BigInt(filesz), at + 40)
    out.writeBigUInt64LE(1n, at + 48)
  }
  ph(0, 4, noteOff, note.length, 0)
  note.copy(out, noteOff)
  segments.forEach((s, i) => {
    ph(i + 1, 1, s.offset, s.data.length, 0x400000 + i * 0x100000)
    s.data.copy(out, s.offset)
  })
  return out
}
