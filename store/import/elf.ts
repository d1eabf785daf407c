/**
 * ELF64 little-endian core files (gdb `gcore`, QEMU `dump-guest-memory`). Each PT_LOAD
 * segment's file bytes are one extent paged from its own start, since gdb writes segments at
 * offsets that are not page aligned; headers, notes and gaps are extents of their own, so the
 * extents partition the file and export rebuilds it byte for byte.
 */
import { ImageFormatError } from '../errors.ts'
import type { Extent } from '../index.ts'

export const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46])
const EHDR_SIZE = 64
const PHDR_SIZE = 56
const ET_CORE = 4
const PT_LOAD = 1
const PN_XNUM = 0xffff
const SHDR_SIZE = 64

export type ReadAt = (offset: number, length: number) => Promise<Buffer>

export function isElf (head: Uint8Array): boolean {
  return head.byteLength >= 4 && Buffer.from(head.buffer, head.byteOffset, 4).equals(ELF_MAGIC)
}

/** Extents of an ELF core of `size` bytes; `readAt` returns fewer bytes at end of file. */
export async function elfExtents (path: string, size: number, readAt: ReadAt): Promise<Extent[]> {
  const bad = (why: string): never => { throw new ImageFormatError(`${path}: ${why}`) }
  if (size < EHDR_SIZE) bad(`truncated ELF file: ${size} bytes, the ELF header needs ${EHDR_SIZE}`)
  const eh = await readAt(0, EHDR_SIZE)
  if (eh[4] !== 2) bad('ELF file is not 64-bit (only ELF64 core files are supported)')
  if (eh[5] !== 1) bad('ELF file is not little-endian (only little-endian core files are supported)')
  const type = eh.readUInt16LE(16)
  if (type !== ET_CORE) bad(`ELF file is not a core file (e_type ${type}, expected ${ET_CORE})`)
  const phoff = Number(eh.readBigUInt64LE(32))
  const shoff = Number(eh.readBigUInt64LE(40))
  const phentsize = eh.readUInt16LE(54)
  let phnum = eh.readUInt16LE(56)
  if (phnum > 0 && phentsize < PHDR_SIZE) bad(`ELF program header entry size ${phentsize} is smaller than ${PHDR_SIZE}`)
  if (phnum === PN_XNUM) {
    // the real count is in sh_info of section header 0
    if (shoff + SHDR_SIZE > size) bad(`truncated ELF file: section header 0 at ${shoff} lies beyond the end (${size} bytes)`)
    const sh = await readAt(shoff, SHDR_SIZE)
    phnum = sh.readUInt32LE(44)
  }
  const phEnd = phoff + phnum * phentsize
  if (phnum > 0 && (!Number.isSafeInteger(phEnd) || phEnd > size)) {
    bad(`truncated ELF file: ${phnum} program headers at ${phoff} end at byte ${phEnd}, the file has ${size}`)
  }
  const table = phnum > 0 ? await readAt(phoff, phnum * phentsize) : Buffer.alloc(0)
  const segments: Extent[] = []
  for (let i = 0; i < phnum; i++) {
    const at = i * phentsize
    if (table.readUInt32LE(at) !== PT_LOAD) continue
    const offset = Number(table.readBigUInt64LE(at + 8))
    const filesz = Number(table.readBigUInt64LE(at + 32))
    if (filesz === 0) continue
    const end = offset + filesz
    if (!Number.isSafeInteger(end) || end > size) {
      bad(`truncated ELF core: PT_LOAD segment ${i} ends at byte ${end}, the file has ${size}`)
    }
    segments.push({ offset, length: filesz })
  }
  segments.sort((a, b) => a.offset - b.offset)
  const extents: Extent[] = []
  let at = 0
  for (const s of segments) {
    if (s.offset < at) bad(`PT_LOAD segments overlap at byte ${s.offset}`)
    if (s.offset > at) extents.push({ offset: at, length: s.offset - at })
    extents.push(s)
    at = s.offset + s.length
  }
  if (at < size) extents.push({ offset: at, length: size - at })
  return extents
}
