import { homedir } from 'node:os'
import { join } from 'node:path'

/** Size of one memory page. Images are paged in units of this size. */
export const PAGE_SIZE = 4096

/** Default repository directory; `--repo` and `MEMFABRIC_REPO` override it. */
export const DEFAULT_REPO = join(homedir(), '.memfabric')

/** Environment variable that names the repository directory. */
export const REPO_ENV = 'MEMFABRIC_REPO'
