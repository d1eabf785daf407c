/**
 * Formatting for people: binary units, ratios, durations and aligned tables. Pure functions;
 * the runner decides where the text goes.
 */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

/** `1536` → `1.5 KiB`; exact bytes below 1 KiB. */
export function formatBytes (bytes: number): string {
  if (!Number.isFinite(bytes)) {
    return String(bytes)
  }
  const sign = bytes < 0 ? '-' : ''
  let value = Math.abs(bytes)
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit++
  }
  if (unit === 0) {
    return `${sign}${value} B`
  }
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2
  return `${sign}${value.toFixed(digits)} ${UNITS[unit]}`
}

/** Bytes per second as `12.3 MiB/s`. */
export function formatRate (bytesPerSecond: number): string {
  return `${formatBytes(Math.round(bytesPerSecond))}/s`
}

/** `3.14159` → `3.14x` (a dedup or compression ratio). */
export function formatRatio (ratio: number): string {
  if (!Number.isFinite(ratio)) {
    return '-'
  }
  return `${ratio.toFixed(2)}x`
}

/** `part` of `whole` as `25.0%`. */
export function formatPercent (part: number, whole: number): string {
  if (whole <= 0) {
    return '-'
  }
  return `${(100 * part / whole).toFixed(1)}%`
}

/** Seconds as `42s`, `3m05s`, `1h02m`. */
export function formatDuration (seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) {
    return '--'
  }
  const s = Math.round(seconds)
  if (s < 60) {
    return `${s}s`
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  }
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

/** Integer with thousands separators: `262144` → `262,144`. */
export function formatCount (n: number): string {
  return n.toLocaleString('en-US')
}

/** Unix milliseconds as a local-time ISO-like stamp, `2026-11-25 11:53:47`. */
export function formatTime (ms: number): string {
  const d = new Date(ms)
  if (Number.isNaN(d.getTime())) {
    return '-'
  }
  const p = (n: number): string => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
}

export interface Column {
  header: string
  /** Right-align (numbers). */
  right?: boolean
}

/** Rows as an aligned table with a header line; no trailing spaces. */
export function formatTable (columns: Column[], rows: string[][]): string {
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells
    .map((cell, i) => columns[i].right === true ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))
    .join('  ')
    .trimEnd()
  return [line(columns.map(c => c.header)), ...rows.map(line)].join('\n')
}

/** `key: value` pairs with the values aligned. */
export function formatFields (fields: Array<[string, string]>): string {
  const width = Math.max(0, ...fields.map(([k]) => k.length + 1))
  return fields.map(([k, v]) => `${(k + ':').padEnd(width)} ${v}`.trimEnd()).join('\n')
}

/** Replace the home directory prefix with `~` for display. */
export function tildify (path: string, home: string): string {
  if (home !== '' && (path === home || path.startsWith(home + '/'))) {
    return '~' + path.slice(home.length)
  }
  return path
}

/** Collapse a message to one line (errors must never span lines). */
export function oneLine (message: string): string {
  return message.split(/\r?\n/).map(s => s.trim()).filter(s => s !== '').join('; ')
}

/** `1 image`, `2 images`. */
export function plural (n: number, noun: string): string {
  return `${formatCount(n)} ${noun}${n === 1 ? '' : 's'}`
}
