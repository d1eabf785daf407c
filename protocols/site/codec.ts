import * as cbor from '@ipld/dag-cbor'
import type { Uint8ArrayList } from 'uint8arraylist'
import { MAX_SITE_LENGTH } from './constants.ts'
import { InvalidSiteMessageError } from './errors.ts'

export interface Hello {
  site: string
}

export function encodeHello (hello: Hello): Uint8Array {
  return cbor.encode({ site: hello.site })
}

export function decodeHello (bytes: Uint8Array | Uint8ArrayList): Hello {
  let value: unknown
  try {
    value = cbor.decode(bytes instanceof Uint8Array ? bytes : bytes.subarray())
  } catch (err: any) {
    throw new InvalidSiteMessageError(`undecodable hello: ${err.message}`)
  }
  const site = (value as { site?: unknown } | null)?.site
  if (typeof site !== 'string' || site.length === 0 || site.length > MAX_SITE_LENGTH) {
    throw new InvalidSiteMessageError('hello without a valid site label')
  }
  return { site }
}
