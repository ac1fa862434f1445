// What a version runs (its job) and how runs are prioritised, in words for tables and forms.
import type { CreateRunBody, CreateRunLimits, JobLimits, JobOverrides, JobSpec, PriorityName, PtySize, Run, Version } from '../api/types'
import { FieldError } from './schema'
import { formatBytes } from './format'

/** The named tiers and their numbers, highest first (crates/core job::Priority). */
export const PRIORITIES: readonly { name: PriorityName; value: number }[] = [
  { name: 'foreground', value: 100 },
  { name: 'background', value: 0 },
  { name: 'best_effort', value: -100 },
]

/**
 * A priority as shown: its name when the server sent one, else the number
 * ("—" when there is neither; `dflt` when the server says null: no default set).
 */
export function priorityLabel(
  p: { priority?: number | null; priority_name?: string | null },
  dflt = '—',
): string {
  if (p.priority_name) return p.priority_name
  if (typeof p.priority === 'number') return String(p.priority)
  return p.priority === null ? dflt : '—'
}

const MAX_SHELL = 48

/** An argv as a shell would read it back: words with spaces or quotes in single quotes. */
export function shellJoin(argv: readonly string[]): string {
  return argv.map((a) => (a !== '' && /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ')
}

function truncate(s: string, n: number): string {
  const one = s.replace(/\s*\n\s*/g, '; ')
  return one.length > n ? `${one.slice(0, n - 1)}…` : one
}

export interface JobSummary {
  /** One line: "command make test", "git https://h/x.git@v1 · script ci.py", "binary https://… (sha256 abcd…)". */
  text: string
  /** The untruncated form, for a tooltip. */
  full: string
  /** "PTY", "PTY 120×40", "memory 256 MiB", "cpus 1.5", "pids 256", "disk 1 GiB". */
  badges: string[]
}

function entryText(job: JobSpec, entrypoint: string, short: boolean): string {
  const e = job.entry as Partial<Record<string, unknown>> & { kind?: string }
  switch (e?.kind) {
    case 'script':
      return `script ${typeof e.path === 'string' ? e.path : entrypoint}`
    case 'command':
      return `command ${shellJoin(Array.isArray(e.argv) ? (e.argv as string[]) : [])}`
    case 'shell': {
      const script = typeof e.script === 'string' ? e.script : ''
      return `shell ${short ? truncate(script, MAX_SHELL) : script}`
    }
    case 'binary':
      return Array.isArray(e.args) && e.args.length ? shellJoin(e.args as string[]) : ''
    default:
      return `script ${entrypoint}`
  }
}

function describe(job: JobSpec, entrypoint: string, short: boolean): string {
  const entry = entryText(job, entrypoint, short)
  const src = job.source
  if (src?.kind === 'git') return `git ${src.url}@${src.ref}${entry ? ` · ${entry}` : ''}`
  if (src?.kind === 'binary') {
    const sha = short ? `${src.sha256.slice(0, 12)}…` : src.sha256
    return `binary ${src.url} (sha256 ${sha})${entry ? ` ${entry}` : ''}`
  }
  return entry || `script ${entrypoint}`
}

/** The badges of a PTY size and limits (what a version or a run override sets). */
export function jobBadges(pty: PtySize | boolean | null | undefined, limits: JobLimits | null | undefined): string[] {
  const out: string[] = []
  if (pty === true) out.push('PTY')
  else if (pty && typeof pty === 'object') out.push(pty.cols === 80 && pty.rows === 24 ? 'PTY' : `PTY ${pty.cols}×${pty.rows}`)
  const l = (limits ?? {}) as Record<string, unknown>
  // Sizes are bytes; a size echoed as written ("256MiB") shows as it is.
  const size = (v: unknown) => (typeof v === 'number' ? formatBytes(v) : typeof v === 'string' && v ? v : null)
  const count = (v: unknown) => (typeof v === 'number' || (typeof v === 'string' && v) ? String(v) : null)
  for (const [key, show] of [
    ['memory', size],
    ['cpus', count],
    ['pids', count],
    ['disk', size],
  ] as const) {
    const v = show(l[key])
    if (v !== null) out.push(`${key} ${v}`)
  }
  return out
}

/** What a version runs; a version without `job` (an older server) runs its script entrypoint. */
export function jobSummary(v: Pick<Version, 'entrypoint' | 'job'>): JobSummary {
  if (!v.job || typeof v.job !== 'object') {
    const text = `script ${v.entrypoint}`
    return { text, full: text, badges: [] }
  }
  return {
    text: describe(v.job, v.entrypoint, true),
    full: describe(v.job, v.entrypoint, false),
    badges: jobBadges(v.job.pty, v.job.limits),
  }
}

/** The badges of a run's overrides, plus "ref v2" for a git ref. */
export function overrideBadges(o: JobOverrides | null | undefined): string[] {
  if (!o) return []
  const out = jobBadges(o.pty, o.limits)
  if (o.pty === false) out.unshift('pipes')
  if (o.git_url) out.push(`git ${o.git_url}`)
  if (o.ref) out.push(`ref ${o.ref}`)
  return out
}

export interface OverrideInputs {
  /** the checkbox; compared with the version's setting */
  pty: boolean
  versionPty: boolean
  memory: string
  cpus: string | number
  pids: string | number
  disk: string | number
  ref: string
}

// A size as the API takes it: bytes, or a number with a unit; the server knows the units.
const SIZE_RE = /^\d+(\.\d+)?\s*[A-Za-z]*$/

function size(field: string, label: string, raw: string): string | number | undefined {
  const s = raw.trim()
  if (!s) return undefined
  if (!SIZE_RE.test(s)) throw new FieldError(field, `${label} must be a size like 256MiB or 1GiB`)
  return /^\d+$/.test(s) ? Number(s) : s.replace(/\s+/g, '')
}

/**
 * The optional per-run overrides of the trigger form, as the create-run body takes them:
 * `pty` only when it differs from the version, `limits` only with a field set, `ref` when typed.
 */
export function buildOverrides(i: OverrideInputs): Pick<CreateRunBody, 'pty' | 'limits' | 'ref'> {
  const out: Pick<CreateRunBody, 'pty' | 'limits' | 'ref'> = {}
  if (i.pty !== i.versionPty) out.pty = i.pty
  const limits: CreateRunLimits = {}
  const memory = size('memory', 'Memory', String(i.memory))
  if (memory !== undefined) limits.memory = memory
  const disk = size('disk', 'Disk', String(i.disk))
  if (disk !== undefined) limits.disk = disk
  const cpus = String(i.cpus).trim()
  if (cpus) {
    const n = Number(cpus)
    if (!Number.isFinite(n) || n <= 0) throw new FieldError('cpus', 'CPUs must be a number above 0, like 1.5')
    limits.cpus = n
  }
  const pids = String(i.pids).trim()
  if (pids) {
    const n = Number(pids)
    if (!Number.isInteger(n) || n < 1) throw new FieldError('pids', 'Pids must be a whole number of at least 1')
    limits.pids = n
  }
  if (Object.keys(limits).length) out.limits = limits
  if (i.ref.trim()) out.ref = i.ref.trim()
  return out
}

/**
 * The body that runs `r` again as it ran: same input, version, environment
 * and priority, and the same PTY, limits and ref overrides (its version's
 * own choices still apply where it overrode nothing).
 */
export function rerunBody(r: Pick<Run, 'input' | 'version_no' | 'environment' | 'priority' | 'job_overrides'>): CreateRunBody {
  const body: CreateRunBody = {
    input: r.input,
    version_no: r.version_no,
    environment: r.environment,
    priority: r.priority,
  }
  const o = r.job_overrides
  if (o?.pty !== undefined && o.pty !== null) body.pty = o.pty
  if (o?.limits) {
    const limits: CreateRunLimits = {}
    for (const k of ['memory', 'cpus', 'pids', 'disk'] as const) {
      const v = o.limits[k]
      if (v !== undefined && v !== null) (limits as Record<string, string | number>)[k] = v
    }
    if (Object.keys(limits).length > 0) body.limits = limits
  }
  if (o?.ref) body.ref = o.ref
  if (o?.git_url) body.git_url = o.git_url
  return body
}
