/**
 * A seeded generator of memory-image-like files for the store benchmark: a mix of zero pages,
 * pages repeated within the image, pages shared with a template image, and unique pages.
 */
import { createCipheriv, createHash } from 'node:crypto'
import { open } from 'node:fs/promises'

const PAGE = 4096

export interface ImageMix {
  zero: number
  duplicate: number
  template: number
}

export const DEFAULT_MIX: ImageMix = { zero: 0.25, duplicate: 0.15, template: 0.2 }

/** mulberry32: a tiny seeded PRNG for choosing page kinds. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Deterministic pseudo-random bytes: AES-128-CTR keystream keyed by the seed. */
function keystream (seed: string): (n: number) => Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16)
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16))
  return (n: number) => cipher.update(Buffer.alloc(n))
}

/** Page i of the template image with `seed` (the template is all unique pages). */
function templateStream (seed: number): (n: number) => Buffer {
  return keystream(`template-${seed}`)
}

/** Write the template image: `pages` unique pages. */
export async function writeTemplate (path: string, pages: number, seed = 1): Promise<void> {
  const fh = await open(path, 'w')
  const next = templateStream(seed)
  try {
    const per = 2048
    for (let p = 0; p < pages; p += per) {
      const n = Math.min(per, pages - p)
      await fh.write(next(n * PAGE), 0, n * PAGE, p * PAGE)
    }
  } finally {
    await fh.close()
  }
}

/**
 * Write an image of `pages` pages: zero pages, copies of earlier pages of this image, pages of
 * the template (`templatePages` long, same seed), and unique pages, mixed at random.
 */
export async function writeImage (path: string, pages: number, templatePages: number, mix: ImageMix = DEFAULT_MIX, seed = 1): Promise<void> {
  const rand = prng(seed)
  const unique = keystream(`image-${seed}`)
  // template pages are regenerated from its keystream in order, so share a prefix of it
  const template = templateStream(seed)
  let templateUsed = 0
  const fh = await open(path, 'w')
  const per = 2048
  const buf = Buffer.alloc(per * PAGE)
  // a ring of recent unique pages to duplicate
  const recent: Buffer[] = []
  try {
    for (let p = 0; p < pages; p += per) {
      const n = Math.min(per, pages - p)
      buf.fill(0)
      for (let i = 0; i < n; i++) {
        const r = rand()
        const page = buf.subarray(i * PAGE, (i + 1) * PAGE)
        if (r < mix.zero) continue
        if (r < mix.zero + mix.duplicate && recent.length > 0) {
          recent[Math.floor(rand() * recent.length)].copy(page)
        } else if (r < mix.zero + mix.duplicate + mix.template && templateUsed < templatePages) {
          template(PAGE).copy(page)
          templateUsed++
        } else {
          unique(PAGE).copy(page)
          if (recent.length < 4096) recent.push(Buffer.from(page))
          else recent[Math.floor(rand() * 4096)] = Buffer.from(page)
        }
      }
      await fh.write(buf, 0, n * PAGE, p * PAGE)
    }
  } finally {
    await fh.close()
  }
}
