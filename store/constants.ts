import { homedir } from 'node:os'
import { join } from 'node:path'

/** Size of one memory page. Images are paged in units of this size. */
export const PAGE_SIZE = 4096

/** Default repository directory; `--repo` and `MEMFABRIC_REPO` override it. */
export const DEFAULT_REPO = join(homedir(), '.memfabric')

/** Environment variable that names the repository directory. */
export const REPO_ENV = 'MEMFABRIC_REPO'

/**
 * LevelDB options that bound the table files a database keeps mapped. LevelDB mmaps every
 * table in its table cache (maxOpenFiles - 10 files) and the pages it reads through those maps
 * count in the process's RSS. It raises any maxOpenFiles below 74 to 74, so the smallest cache
 * is 64 tables; with its smallest table files (1 MiB, against classic-level's 2 MiB default)
 * that is at most 64 MiB mapped per database however large the repository grows. Tables
 * already written keep their size until compaction rewrites them.
 */
export const LEVEL_BOUNDED_TABLES = { maxOpenFiles: 74, maxFileSize: 1024 * 1024 } as const
