/**
 * The error model holds together: every error class subclasses MemfabricError with one code
 * of its own, every code the source names is a class's code, and README.md's "Error codes"
 * section lists exactly those codes (a new code fails here until it is documented).
 */
import test from 'ava'
import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { MemfabricError } from '../../common/errors.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
/** Folders of shipped code (tests are left out: they may name made-up codes). */
const SOURCE_DIRS = ['common', 'store', 'protocols', 'node', 'cli', 'qemu', 'testnet', 'bench']
/** Classes that relay a code from the other side (the daemon, a migration destination) and so have none. */
const RELAYS = new Set(['RemoteError', 'MigrationFailedError'])
/** Codes of Node and libp2p that the source tests for; not memfabric's, so not in the README. */
const FOREIGN_CODES = new Set(['ERR_MODULE_NOT_FOUND', 'ERR_MSG_DATA_TOO_LONG', 'ERR_MSG_LENGTH_TOO_LONG', 'ERR_INVALID_MSG_LENGTH'])

type ErrorClass = (new (...args: any[]) => MemfabricError) & { code?: string }
/** An error class with its own static code. */
type ConditionClass = ErrorClass & { code: string }

async function sourceFiles (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      out.push(...await sourceFiles(path))
    } else if (/\.(ts|js)$/.test(entry.name)) {
      out.push(path)
    }
  }
  return out
}

const files = (await Promise.all(SOURCE_DIRS.map(async d => await sourceFiles(join(ROOT, d))))).flat()

/** Every class exported by an errors.ts module, once each (re-exports are the same class). */
async function errorClasses (): Promise<Map<ErrorClass, string>> {
  const classes = new Map<ErrorClass, string>()
  for (const file of files.filter(f => f.endsWith('/errors.ts'))) {
    const module = await import(pathToFileURL(file).href)
    for (const value of Object.values(module)) {
      if (typeof value === 'function' && value.prototype instanceof MemfabricError && !classes.has(value as ErrorClass)) {
        classes.set(value as ErrorClass, relative(ROOT, file))
      }
    }
  }
  return classes
}

const classes = await errorClasses()
const conditions = [...classes.keys()].filter((c): c is ConditionClass => Object.hasOwn(c, 'code'))
const codes = new Set(conditions.map(c => c.code))

/** The codes named in the first column of the tables under README.md's "## Error codes". */
async function readmeCodes (): Promise<Set<string>> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const start = readme.indexOf('\n## Error codes\n')
  if (start < 0) throw new Error('README.md has no "## Error codes" section')
  const next = readme.indexOf('\n## ', start + 1)
  const section = readme.slice(start, next < 0 ? undefined : next)
  const found = new Set<string>()
  for (const line of section.split('\n').filter(l => l.startsWith('|'))) {
    for (const [, code] of line.split('|')[1].matchAll(/`(ERR_[A-Z0-9_]+)`/g)) found.add(code)
  }
  return found
}

test('every error class has one code of its own, or relays one', t => {
  t.true(conditions.length > 40, `found only ${conditions.length} error classes`)
  for (const [cls, file] of classes) {
    if (!Object.hasOwn(cls, 'code')) {
      t.true(RELAYS.has(cls.name), `${cls.name} (${file}) needs a static code`)
    }
  }
  const owners = new Map<string, string[]>()
  for (const cls of conditions) owners.set(cls.code, [...owners.get(cls.code) ?? [], cls.name])
  for (const [code, names] of owners) {
    t.is(names.length, 1, `${code} belongs to ${names.join(', ')}: one class per condition`)
  }
})

test('an instance carries its class code, name and cause', t => {
  for (const cls of conditions) {
    // every constructor takes (message-ish, detail?, options?); strings fit the first two
    const err = new cls('x', 'y')
    t.true(err instanceof MemfabricError && err instanceof Error, cls.name)
    t.is(err.code, cls.code, cls.name)
    t.regex(err.name, /Error$/, cls.name)
  }
  const cause = new Error('below')
  t.is(new MemfabricError('above', 'ERR_X', { cause }).cause, cause)
})

test('every code the source names is defined by an error class', async t => {
  for (const file of files) {
    const text = await readFile(file, 'utf8')
    for (const [code] of text.matchAll(/\bERR_[A-Z0-9_]+\b/g)) {
      t.true(codes.has(code) || FOREIGN_CODES.has(code), `${relative(ROOT, file)} names ${code}, which no error class defines`)
    }
  }
})

test("README.md's error table lists exactly the codes of the error classes", async t => {
  const documented = await readmeCodes()
  t.deepEqual([...codes].filter(c => !documented.has(c)).sort(), [], 'codes missing from README.md "Error codes"')
  t.deepEqual([...documented].filter(c => !codes.has(c)).sort(), [], 'README.md lists codes no class defines')
})
