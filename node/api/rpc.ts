/**
 * The control API's wire shape: `POST /api/v0/<method>` with a JSON array of arguments; the
 * answer is NDJSON — zero or more `{"progress":…}` lines, then one `{"result":…}` or
 * `{"error":{"code","message"}}` line.
 *
 * A call whose options hold a callback (live migrate's `pause`) sends `true` in its place; when
 * the daemon calls it, it writes a `{"callback":{"id","name"}}` line and waits until the caller
 * runs its function and posts `{"id"}` (or `{"id","error":{"code","message"}}`) to
 * {@link CALLBACK_PATH}. The daemon never runs anything of the caller's: the caller does.
 */
export const API_PREFIX = '/api/v0/'

/** Where a caller answers a callback line. */
export const CALLBACK_PATH = '/api/v0/callback'

export interface MethodSpec {
  /** Which argument is the options object. */
  optionsArg: number
  /** Option keys the method takes over the wire (besides signal and onProgress); any other is refused. */
  options: readonly string[]
  /** Arguments that are files on the daemon's host: they must be absolute (the caller resolves them). */
  paths?: readonly number[]
  /** Options that are functions of the caller, called back over the call's stream. */
  callbacks?: readonly string[]
}

/** Methods of MemfabricApi callable over HTTP. */
export const API_METHODS: Record<string, MethodSpec> = {
  importImage: { optionsArg: 1, options: ['name'], paths: [0] },
  exportImage: { optionsArg: 2, options: [], paths: [1] },
  exportCar: { optionsArg: 2, options: [], paths: [1] },
  importCar: { optionsArg: 1, options: ['name'], paths: [0] },
  list: { optionsArg: 0, options: [] },
  inspect: { optionsArg: 1, options: [] },
  remove: { optionsArg: 1, options: [] },
  gc: { optionsArg: 0, options: [] },
  stats: { optionsArg: 0, options: [] },
  verify: { optionsArg: 0, options: ['deep'] },
  id: { optionsArg: 0, options: [] },
  peers: { optionsArg: 0, options: [] },
  providers: { optionsArg: 1, options: [] },
  migrate: { optionsArg: 2, options: ['name', 'out', 'live', 'minDirtyPages', 'maxRounds', 'pause'], callbacks: ['pause'] },
  pull: { optionsArg: 2, options: ['name', 'out'] }
}

/** Largest request body the API reads. */
export const MAX_REQUEST_BODY = 1024 * 1024

export interface RpcError { code: string, message: string }

export type RpcLine =
  | { progress: unknown }
  | { callback: { id: string, name: string } }
  | { result: unknown }
  | { error: RpcError }

/** The body of a POST to CALLBACK_PATH. */
export interface CallbackAnswer {
  id: string
  error?: RpcError
}
