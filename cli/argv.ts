/** Command-line splitting shared by the executable's early start-up and the runner. */

/** Split off the command name; only global flags may precede it. */
export function splitCommand (argv: string[]): { before: string[], name?: string, rest: string[] } {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') {
      break
    }
    if (a === '--repo') {
      i++
      continue
    }
    if (a.startsWith('-')) {
      continue
    }
    return { before: argv.slice(0, i), name: a, rest: [...argv.slice(0, i), ...argv.slice(i + 1)] }
  }
  return { before: argv, rest: [] }
}
