/**
 * The shape of a CLI command module and the helpers every command shares: global options
 * (`--repo`, `--json`, `--help`), the usage error, and positional/flag validation.
 *
 * A command is split like lodestar's: `handlerInit` is pure (parsed argv + environment →
 * validated params, throws `UsageError`) and is unit-tested; `handler` does the work through
 * the `CommandContext` the runner gives it.
 */
import { homedir } from 'node:os'
import { DEFAULT_REPO, REPO_ENV } from '../store/constants.ts'
import { UsageError } from './errors.ts'
import type { MemfabricApi } from '../node/api/index.ts'
import type { Progress } from './progress.ts'
import { tildify } from './output.ts'

export { UsageError }

/** Exit codes that mean something. */
export const EXIT_OK = 0
/** A typed error (bad input, missing ref, locked repo...) or an unexpected failure. */
export const EXIT_ERROR = 1
/** Bad command line. */
export const EXIT_USAGE = 2
/** Interrupted by Ctrl-C (128 + SIGINT). */
export const EXIT_INTERRUPTED = 130

/** One flag of a command, as `node:util` `parseArgs` sees it plus help text. */
export interface CommandOption {
  type: 'string' | 'boolean'
  short?: string
  /** May be given several times (values collected in order). */
  multiple?: boolean
  /** One line for `--help`. */
  description: string
  /** Placeholder shown in help (`DIR`, `NAME`, `MA`). */
  valueName?: string
  /**
   * Default shown in help; applied by `handlerInit`, not by the parser. A function is called
   * only when help is shown (to read a library's DEFAULT_* without loading it on every run).
   */
  defaultText?: string | (() => string | Promise<string>)
  /** Environment variable mapped onto this option (flag beats env beats default). */
  env?: string
}

export type CommandOptions = Record<string, CommandOption>

/** A positional argument, for help. */
export interface CommandArgument {
  name: string
  description: string
}

/** Output of `parseArgs`: flag values by long name and the positionals after the command. */
export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>
  positionals: string[]
}

export type Env = Record<string, string | undefined>

/** Params every command receives. */
export interface GlobalParams {
  repo: string
  json: boolean
}

/** A stream the runner writes to. */
export interface OutputStream {
  write (chunk: string): unknown
  isTTY?: boolean
  columns?: number
}

/** What the runner gives a handler. */
export interface CommandContext {
  /** Aborted on the first Ctrl-C; pass it to every api call. */
  signal: AbortSignal
  env: Env
  stdout: OutputStream
  stderr: OutputStream
  /** Print text and a newline on stdout. */
  print (text: string): void
  /** Print exactly one JSON value on stdout. */
  printJson (value: unknown): void
  /** Print `memfabric: warning: ...` on stderr. */
  warn (text: string): void
  /** The api for a repository: the running daemon if one answers, else the repo opened directly. */
  connect (repo: string): Promise<MemfabricApi>
  /** A progress bar on stderr; silent unless stderr is a TTY and `json` is false. */
  progress (label: string, json: boolean, unitBytes?: number): Progress
}

export interface CommandExample {
  command: string
  description?: string
}

/** One module per command in `cli/commands/<name>.ts` exports one of these. */
export interface Command<P = unknown> {
  name: string
  /** One line for the command list. */
  description: string
  /** Synopsis after `memfabric `, e.g. `import FILE [--name NAME]`. */
  usage: string
  /** A paragraph for `memfabric CMD --help` (defaults to `description`). */
  details?: string
  args?: CommandArgument[]
  /** The command's own flags; the global ones are added by the runner. */
  options: CommandOptions
  examples?: CommandExample[]
  /** Pure: parsed argv and environment → validated params. Throws UsageError. */
  handlerInit (args: ParsedArgs, env: Env): P
  /** Does the work; resolves to an exit code (undefined means 0). */
  handler (params: P, ctx: CommandContext): Promise<number | undefined>
}

/** Erase the params type to store commands of different kinds in one registry. */
export type AnyCommand = Command<any>

/** Run `fn` with the repository's api (the daemon's, or the repository opened directly), then close it. */
export async function withApi<T> (ctx: CommandContext, repo: string, fn: (api: MemfabricApi) => Promise<T>): Promise<T> {
  const api = await ctx.connect(repo)
  try {
    return await fn(api)
  } finally {
    await api.close()
  }
}

/** Define a command with its params type inferred from `handlerInit`. */
export function defineCommand<P> (command: Command<P>): Command<P> {
  return command
}

/** Flags every command takes. */
export const GLOBAL_OPTIONS: CommandOptions = {
  repo: {
    type: 'string',
    valueName: 'DIR',
    description: 'repository directory',
    defaultText: tildify(DEFAULT_REPO, homedir()),
    env: REPO_ENV
  },
  json: {
    type: 'boolean',
    description: 'print one JSON value on stdout instead of text'
  },
  help: {
    type: 'boolean',
    short: 'h',
    description: 'show this help'
  }
}

/** `--repo` / `MEMFABRIC_REPO` / default, and `--json`. */
export function globalParams (args: ParsedArgs, env: Env): GlobalParams {
  const flag = stringOption(args, 'repo')
  const fromEnv = env[REPO_ENV]
  let repo = DEFAULT_REPO
  if (flag !== undefined) {
    repo = flag
  } else if (fromEnv !== undefined && fromEnv !== '') {
    repo = fromEnv
  }
  if (repo === '') {
    throw new UsageError('option \'--repo\' needs a directory')
  }
  return { repo, json: args.values.json === true }
}

/** The positionals, checked against the expected names (all required). */
export function takePositionals (args: ParsedArgs, names: string[]): string[] {
  if (args.positionals.length < names.length) {
    throw new UsageError(`missing argument ${names[args.positionals.length]}`)
  }
  if (args.positionals.length > names.length) {
    throw new UsageError(`unexpected argument '${args.positionals[names.length]}'`)
  }
  for (let i = 0; i < names.length; i++) {
    if (args.positionals[i] === '') {
      throw new UsageError(`argument ${names[i]} is empty`)
    }
  }
  return args.positionals
}

/** A single string flag (last one wins if repeated without `multiple`). */
export function stringOption (args: ParsedArgs, name: string): string | undefined {
  const v = args.values[name]
  if (v === undefined || typeof v === 'boolean') {
    return undefined
  }
  if (Array.isArray(v)) {
    return v[v.length - 1]
  }
  return v
}

/** A repeatable string flag; each value may also be comma-separated. */
export function listOption (args: ParsedArgs, name: string): string[] | undefined {
  const v = args.values[name]
  if (v === undefined || typeof v === 'boolean') {
    return undefined
  }
  const list = Array.isArray(v) ? v : [v]
  return list.flatMap(s => s.split(',')).map(s => s.trim()).filter(s => s !== '')
}

/** A string flag that must not be empty when given. */
export function nonEmptyOption (args: ParsedArgs, name: string): string | undefined {
  const v = stringOption(args, name)
  if (v !== undefined && v.trim() === '') {
    throw new UsageError(`option '--${name}' needs a value`)
  }
  return v
}
