/**
 * The `memfabric` command line: parses argv strictly, picks a command from the registry,
 * runs its `handlerInit` (pure validation) then its `handler` against the api, and maps what
 * happens to an exit code — 0 ok, 1 error (one line on stderr), 2 bad usage, 130 interrupted.
 *
 * @example
 * ```ts
 * import { run } from './cli/index.ts'
 * const code = await run(['import', '/dev/shm/vm1.ram', '--name', 'vm1', '--json'])
 * ```
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import type { MemfabricApi } from '../node/api/index.ts'
import { GLOBAL_OPTIONS, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError } from './command.ts'
import type { AnyCommand, CommandContext, CommandOptions, Env, OutputStream, ParsedArgs } from './command.ts'
import { commands, findCommand } from './commands/index.ts'
import { oneLine } from './output.ts'
import { createProgress, silentProgress } from './progress.ts'
import { splitCommand } from './argv.ts'

export * from './command.ts'
export { commands, findCommand } from './commands/index.ts'

const BIN = 'memfabric'

/** What `run` talks to; every field defaults to the real process. */
export interface RunIo {
  stdout?: OutputStream
  stderr?: OutputStream
  env?: Env
  /** Aborting it stops the running command (the bin aborts it on the first Ctrl-C). */
  signal?: AbortSignal
  /** How commands reach a repository (default: `connectApi` from node/api/connect.ts). */
  connect?(repo: string, options: { signal: AbortSignal, token?: string }): Promise<MemfabricApi>
}

/** Bearer token for a daemon whose control API requires one (shared with `daemon --api-token`). */
export const API_TOKEN_ENV = 'MEMFABRIC_API_TOKEN'

/** The package version, read once on demand. */
export function version (): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

/** `parseArgs` config for a command: its own flags plus the global ones. */
function parserOptions (cmd: AnyCommand): Record<string, { type: 'string' | 'boolean', short?: string, multiple?: boolean }> {
  const all: CommandOptions = { ...cmd.options, ...GLOBAL_OPTIONS }
  const out: Record<string, { type: 'string' | 'boolean', short?: string, multiple?: boolean }> = {}
  for (const [name, o] of Object.entries(all)) {
    out[name] = { type: o.type, ...(o.short !== undefined ? { short: o.short } : {}), ...(o.multiple === true ? { multiple: true } : {}) }
  }
  return out
}

/** Parse a command's argv strictly; parse failures become one-line UsageErrors. */
export function parseCommandArgs (cmd: AnyCommand, argv: string[]): ParsedArgs {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: parserOptions(cmd), strict: true, allowPositionals: true })
    return { values: values as ParsedArgs['values'], positionals }
  } catch (err: any) {
    throw new UsageError(parseErrorMessage(err))
  }
}

/** node:util parseArgs messages are long and capitalised; keep the first sentence. */
function parseErrorMessage (err: { code?: string, message?: string }): string {
  let message = String(err.message ?? err)
  const unknown = /^Unknown option '([^']+)'/.exec(message)
  if (unknown != null) {
    return `unknown option '${unknown[1]}'`
  }
  if (/^Option '[^']+' argument (missing|is ambiguous)/.test(message)) {
    // the long name appears in both forms of the message ('-o, --out <value>', '--out=-XYZ')
    const long = /(--[\w-]+)/.exec(message)
    return `option '${long?.[1] ?? message.split("'")[1]}' needs a value`
  }
  const dot = message.indexOf('. ')
  if (dot > 0) {
    message = message.slice(0, dot)
  }
  return oneLine(message.charAt(0).toLowerCase() + message.slice(1))
}

function optionLabel (name: string, o: CommandOptions[string]): string {
  const flag = `--${name}${o.type === 'string' ? ` ${o.valueName ?? 'VALUE'}` : ''}${o.multiple === true ? '...' : ''}`
  return o.short !== undefined ? `-${o.short}, ${flag}` : `    ${flag}`
}

async function optionText (o: CommandOptions[string]): Promise<string> {
  const notes: string[] = []
  if (o.env !== undefined) {
    notes.push(`env ${o.env}`)
  }
  if (o.defaultText !== undefined) {
    notes.push(`default: ${typeof o.defaultText === 'function' ? await o.defaultText() : o.defaultText}`)
  }
  return notes.length > 0 ? `${o.description} (${notes.join(', ')})` : o.description
}

async function optionLines (options: CommandOptions): Promise<string[]> {
  const entries = Object.entries(options)
  const labels = entries.map(([name, o]) => optionLabel(name, o))
  const width = Math.max(...labels.map(l => l.length))
  const texts = await Promise.all(entries.map(async ([, o]) => await optionText(o)))
  return entries.map((_, i) => `  ${labels[i].padEnd(width)}  ${texts[i]}`)
}

/** `memfabric --help`. */
export async function topHelp (list: AnyCommand[] = commands): Promise<string> {
  const width = Math.max(...list.map(c => c.name.length))
  return [
    `${BIN} — a peer-to-peer, content-addressed memory network for migrating VMs`,
    '',
    `Usage: ${BIN} <command> [options]`,
    '',
    'Commands:',
    ...list.map(c => `  ${c.name.padEnd(width)}  ${c.description}`),
    '',
    'Global options (every command):',
    ...await optionLines({ ...GLOBAL_OPTIONS, version: { type: 'boolean', description: 'print the version' } }),
    '',
    `Run '${BIN} <command> --help' for a command's options and examples.`
  ].join('\n')
}

/** `memfabric CMD --help`. */
export async function commandHelp (cmd: AnyCommand): Promise<string> {
  const lines = [`Usage: ${BIN} ${cmd.usage} [--repo DIR] [--json]`, '', cmd.details ?? capitalise(cmd.description) + '.']
  if (cmd.args !== undefined && cmd.args.length > 0) {
    const width = Math.max(...cmd.args.map(a => a.name.length))
    lines.push('', 'Arguments:', ...cmd.args.map(a => `  ${a.name.padEnd(width)}  ${a.description}`))
  }
  lines.push('', 'Options:', ...await optionLines({ ...cmd.options, ...GLOBAL_OPTIONS }))
  if (cmd.examples !== undefined && cmd.examples.length > 0) {
    lines.push('', 'Examples:')
    for (const e of cmd.examples) {
      if (e.description !== undefined) {
        lines.push(`  # ${e.description}`)
      }
      lines.push(`  ${e.command}`)
    }
  }
  return lines.join('\n')
}

function capitalise (s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1)
}

function defaultConnect (repo: string, options: { signal: AbortSignal, token?: string }): Promise<MemfabricApi> {
  return import('../node/api/connect.ts').then(async m => await m.connectApi(repo, options))
}

function isAbort (err: any, signal: AbortSignal): boolean {
  return signal.aborted || err?.name === 'AbortError' || err?.code === 'ABORT_ERR'
}

/** Run one command line; resolves to the exit code. Never throws. */
export async function run (argv: string[], io: RunIo = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout
  const stderr = io.stderr ?? process.stderr
  const env = io.env ?? process.env
  const signal = io.signal ?? new AbortController().signal
  const connect = io.connect ?? defaultConnect
  const fail = (message: string): void => { stderr.write(`${BIN}: error: ${oneLine(message)}\n`) }

  const { before, name, rest } = splitCommand(argv)
  if (name === undefined) {
    const unknownFlag = before.find(a => !['--help', '-h', '--version', '--json', '--repo'].includes(a.split('=')[0]) && a.startsWith('-'))
    if (before.includes('--version')) {
      stdout.write(`${BIN} ${version()}\n`)
      return EXIT_OK
    }
    if (before.includes('--help') || before.includes('-h')) {
      stdout.write(await topHelp() + '\n')
      return EXIT_OK
    }
    if (unknownFlag !== undefined) {
      fail(`unknown option '${unknownFlag}' (see '${BIN} --help')`)
      return EXIT_USAGE
    }
    stderr.write(await topHelp() + '\n')
    return EXIT_USAGE
  }

  const cmd = findCommand(name)
  if (cmd === undefined) {
    fail(`unknown command '${name}' (see '${BIN} --help')`)
    return EXIT_USAGE
  }

  const wantsHelp = rest.some(a => a === '--help' || a === '-h')
  let params: unknown
  try {
    const parsed = parseCommandArgs(cmd, rest)
    if (parsed.values.help === true) {
      stdout.write(await commandHelp(cmd) + '\n')
      return EXIT_OK
    }
    params = cmd.handlerInit(parsed, env)
  } catch (err: any) {
    if (wantsHelp) {
      stdout.write(await commandHelp(cmd) + '\n')
      return EXIT_OK
    }
    if (err instanceof UsageError) {
      fail(`${err.message} (see '${BIN} ${cmd.name} --help')`)
      return EXIT_USAGE
    }
    fail(String(err?.message ?? err))
    return EXIT_ERROR
  }

  const ctx: CommandContext = {
    signal,
    env,
    stdout,
    stderr,
    print: text => { stdout.write(text + '\n') },
    printJson: value => { stdout.write(JSON.stringify(value, null, 2) + '\n') },
    warn: text => { stderr.write(`${BIN}: warning: ${oneLine(text)}\n`) },
    connect: async repo => {
      const token = env[API_TOKEN_ENV]
      return await connect(repo, { signal, ...(token !== undefined && token !== '' ? { token } : {}) })
    },
    progress: (label, asJson, unitBytes) => stderr.isTTY === true && !asJson
      ? createProgress(stderr, { label, unitBytes })
      : silentProgress
  }

  try {
    return (await cmd.handler(params, ctx)) ?? EXIT_OK
  } catch (err: any) {
    if (isAbort(err, signal)) {
      stderr.write(`${BIN}: interrupted\n`)
      return EXIT_INTERRUPTED
    }
    if (err instanceof UsageError) {
      fail(`${err.message} (see '${BIN} ${cmd.name} --help')`)
      return EXIT_USAGE
    }
    fail(String(err?.message ?? err))
    if (env.DEBUG !== undefined && env.DEBUG !== '' && err?.stack !== undefined) {
      stderr.write(String(err.stack) + '\n')
    }
    return EXIT_ERROR
  }
}

/**
 * The bin's entry: runs `process.argv`, turns the first Ctrl-C (or SIGTERM) into an abort of
 * the running command and the second into an immediate exit 130.
 */
export async function main (argv: string[] = process.argv.slice(2)): Promise<never> {
  const controller = new AbortController()
  let signals = 0
  const onSignal = (): void => {
    signals++
    if (signals === 1) {
      process.stderr.write(`\n${BIN}: stopping (Ctrl-C again to force)\n`)
      controller.abort()
    } else {
      process.exit(EXIT_INTERRUPTED)
    }
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const code = await run(argv, { signal: controller.signal })
  // flush both pipes before exiting: a lingering handle must not keep the CLI alive
  await Promise.all([flush(process.stdout), flush(process.stderr)])
  process.exit(code)
}

async function flush (stream: NodeJS.WriteStream): Promise<void> {
  await new Promise<void>(resolve => stream.write('', () => { resolve() }))
}
