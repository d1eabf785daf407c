/**
 * The control API's wire shape: `POST /api/v0/<method>` with a JSON array of arguments; the
 * answer is NDJSON — zero or more `{"progress":…}` lines, then one `{"result":…}` or
 * `{"error":{"code","message"}}` line.
 */
export const API_PREFIX = '/api/v0/'

/** Methods of MemfabricApi callable over HTTP, and which argument index takes options. */
export const API_METHODS: Record<string, { optionsArg: number }> = {
  importImage: { optionsArg: 1 },
  exportImage: { optionsArg: 2 },
  exportCar: { optionsArg: 2 },
  importCar: { optionsArg: 1 },
  list: { optionsArg: 0 },
  inspect: { optionsArg: 1 },
  remove: { optionsArg: 1 },
  gc: { optionsArg: 0 },
  stats: { optionsArg: 0 },
  verify: { optionsArg: 0 },
  id: { optionsArg: 0 },
  peers: { optionsArg: 0 },
  providers: { optionsArg: 1 },
  migrate: { optionsArg: 2 },
  pull: { optionsArg: 2 }
}

/** Largest request body the API reads. */
export const MAX_REQUEST_BODY = 1024 * 1024

export type RpcLine =
  | { progress: unknown }
  | { result: unknown }
  | { error: { code: string, message: string } }
