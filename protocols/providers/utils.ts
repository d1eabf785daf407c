/** Small helpers shared by the parts of the provider-records service. */

/** A signal that fires after `ms`, or with `signal`, whichever comes first. */
export function withTimeout (ms: number, signal?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(ms)
  return signal == null ? timeout : AbortSignal.any([timeout, signal])
}

/** A map key for bytes without copying them. */
export function bytesKey (u: Uint8Array): string {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString('latin1')
}
