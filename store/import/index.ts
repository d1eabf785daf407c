/**
 * Opening an image for import: checks the input file and works out its format and extents.
 */
import { open, stat } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { ImageFormatError, InputFileError } from '../errors.ts'
import { elfExtents, isElf } from './elf.ts'
import { rawExtents } from './raw.ts'
import type { Extent } from '../index.ts'

export interface ImageSource {
  fh: FileHandle
  size: number
  format: 'raw' | 'elf'
  extents: Extent[]
}

function describe (err: any): string {
  switch (err.code) {
    case 'ENOENT': return 'no such file'
    case 'EACCES': case 'EPERM': return 'permission denied'
    case 'EISDIR': return 'is a directory'
    default: return err.message
  }
}

/** Open `path` for import. Throws InputFileError or ImageFormatError with a one-line message. */
export async function openImage (path: string): Promise<ImageSource> {
  let st
  try {
    st = await stat(path)
  } catch (err: any) {
    throw new InputFileError(`cannot read ${path}: ${describe(err)}`, { cause: err })
  }
  if (st.isDirectory()) throw new InputFileError(`cannot import ${path}: is a directory`)
  let fh: FileHandle
  try {
    fh = await open(path, 'r')
  } catch (err: any) {
    throw new InputFileError(`cannot read ${path}: ${describe(err)}`, { cause: err })
  }
  try {
    // block devices report size 0 from stat; ask the file itself
    const size = st.isFile() ? st.size : (await fh.stat()).size
    if (size === 0) throw new InputFileError(`cannot import ${path}: file is empty`)
    const readAt = async (offset: number, length: number): Promise<Buffer> => {
      const buf = Buffer.alloc(length)
      const { bytesRead } = await fh.read(buf, 0, length, offset)
      return buf.subarray(0, bytesRead)
    }
    let head: Buffer
    try {
      head = await readAt(0, 4)
    } catch (err: any) {
      throw new InputFileError(`cannot read ${path}: ${describe(err)}`, { cause: err })
    }
    if (isElf(head)) {
      return { fh, size, format: 'elf', extents: await elfExtents(path, size, readAt) }
    }
    return { fh, size, format: 'raw', extents: rawExtents(size) }
  } catch (err) {
    await fh.close()
    if (err instanceof InputFileError || err instanceof ImageFormatError) throw err
    throw new InputFileError(`cannot read ${path}: ${describe(err)}`, { cause: err })
  }
}
