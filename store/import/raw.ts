/** Raw memory files: one extent covering the whole file. */
import type { Extent } from '../index.ts'

export function rawExtents (size: number): Extent[] {
  return [{ offset: 0, length: size }]
}
