import type { Run } from '../api/types'

const UNITS: [Intl.RelativeTimeFormatUnit, number][] = [
  ['year', 365 * 24 * 3600],
  ['month', 30 * 24 * 3600],
  ['day', 24 * 3600],
  ['hour', 3600],
  ['minute', 60],
  ['second', 1],
]

const rtf = new Intl.RelativeTimeFormat('en', { numeric: 'auto' })

/** "3 minutes ago", "in 5 seconds"; "—" for null. */
export function relativeTime(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return '—'
  const t = Date.parse(iso)
  if (Number.isNaN(t)) return iso
  const diff = (t - now) / 1000
  // Small future offsets come from clock skew or a clock that ticked a moment ago.
  if (Math.abs(diff) < 5 || (diff > 0 && diff < 60)) return 'just now'
  for (const [unit, secs] of UNITS) {
    if (Math.abs(diff) >= secs || unit === 'second') return rtf.format(Math.round(diff / secs), unit)
  }
  return iso
}

/** Absolute local date-time, for tooltips. */
export function dateTime(iso: string | null | undefined): string {
  if (!iso) return ''
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString()
}

/** 0.42 → "420 ms", 75 → "1m 15s", 3700 → "1h 1m". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '—'
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`
  const s = Math.round(seconds)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  if (h > 0) return `${h}h ${m}m`
  return `${m}m ${s % 60}s`
}

/** Duration of a run in seconds: start (or queue) to finish, or to now while active. */
export function runDuration(run: Pick<Run, 'started_at' | 'finished_at'>, now: number = Date.now()): number | null {
  if (!run.started_at) return null
  const start = Date.parse(run.started_at)
  const end = run.finished_at ? Date.parse(run.finished_at) : now
  if (Number.isNaN(start) || Number.isNaN(end)) return null
  return Math.max(0, (end - start) / 1000)
}

/** 35651584 → "34 MiB", 1536 → "1.5 KiB", 12 → "12 B" (binary units, like the limits). */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let u = 0
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024
    u += 1
  }
  const s = u === 0 || Math.abs(v) >= 10 ? String(Math.round(v)) : v.toFixed(1).replace(/\.0$/, '')
  return `${s} ${units[u]}`
}

export function shortSha(sha: string | null | undefined, n = 12): string {
  return sha ? sha.slice(0, n) : '—'
}

export function percent(x: number | null | undefined): string {
  if (x === null || x === undefined) return '—'
  return `${(x * 100).toFixed(x === 1 || x === 0 ? 0 : 1)}%`
}

export function prettyJson(v: unknown): string {
  return JSON.stringify(v, null, 2)
}

/** "v3" for a version number, "—" when there is none. */
export function versionLabel(n: number | null | undefined): string {
  return typeof n === 'number' && Number.isFinite(n) ? `v${n}` : '—'
}

/** Exit code and error of a finished run in one short cell: "1 · ModuleNotFoundError…". */
export function exitSummary(run: { exit_code: number | null; error_message: string | null }): string {
  const parts: string[] = []
  if (run.exit_code !== null && run.exit_code !== undefined) parts.push(String(run.exit_code))
  if (run.error_message) parts.push(run.error_message)
  return parts.length ? parts.join(' · ') : '—'
}

/**
 * An RFC 3339 instant written with its zone's offset ("2026-11-30T09:00:00+01:00")
 * as that zone's wall clock: "2026-11-30 09:00:00 (+01:00)". Kept as written,
 * not converted to the browser's zone: a schedule's times are in its own zone.
 */
export function wallClock(local: string): string {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(local)
  if (!m) return local
  return `${m[1]} ${m[2]} (${m[3] === 'Z' ? 'UTC' : m[3]})`
}

/**
 * Where a run stands in its failure-retry budget: "attempt 2 of 4", plus
 * ", retry at 10:00:03 (in 3 s)" while it waits for its retry. `attempts`
 * is how many attempts it has had; a queued run's next one is counted.
 */
export function attemptSummary(
  run: Pick<Run, 'status' | 'failure_retries' | 'failure_retry_count' | 'not_before'>,
  attempts: number,
  now: number = Date.now(),
): string {
  const total = 1 + (run.failure_retries ?? 0)
  const at = run.not_before ? Date.parse(run.not_before) : NaN
  const waiting = run.status === 'queued' && !Number.isNaN(at) && at > now
  // A queued run's next attempt is the one that counts.
  const n = Math.max(1, attempts + (run.status === 'queued' ? 1 : 0))
  let s = `attempt ${n} of ${total}`
  if ((run.failure_retry_count ?? 0) > 0) s += ` · ${run.failure_retry_count} failure retr${run.failure_retry_count === 1 ? 'y' : 'ies'} used`
  if (waiting) {
    const secs = Math.max(0, Math.ceil((at - now) / 1000))
    s += `, retry at ${new Date(at).toLocaleTimeString()} (in ${secs} s)`
  }
  return s
}
