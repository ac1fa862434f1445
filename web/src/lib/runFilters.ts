import type { Run } from '../api/types'

/**
 * Run-list filters the API has no parameter for (GET /api/v1/runs takes status, app, limit,
 * offset only): a queued-at date range and a run id. They are applied here, on the client.
 */
export interface ClientRunFilters {
  /** yyyy-mm-dd, local time, inclusive */
  from?: string
  /** yyyy-mm-dd, local time, inclusive (the whole day) */
  to?: string
  /** run id as typed: "42" or "#42" */
  id?: string
  /** filters the API may not apply on that endpoint (the per-app list has no status parameter) */
  status?: string
  app?: string
}

const DAY_RE = /^(\d{4})-(\d{2})-(\d{2})$/

/** Start of a local calendar day in ms, or null when the string is not yyyy-mm-dd. */
export function dayStart(day: string | undefined | null): number | null {
  const m = DAY_RE.exec((day ?? '').trim())
  if (!m) return null
  const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]))
  return Number.isNaN(d.getTime()) || d.getDate() !== Number(m[3]) ? null : d.getTime()
}

/** [from, to) in ms for an inclusive range of local days; null bounds are open. */
export function dateBounds(from?: string, to?: string): { fromMs: number | null; toMs: number | null } {
  const fromMs = dayStart(from)
  const toStart = dayStart(to)
  let toMs: number | null = null
  if (toStart !== null) {
    const d = new Date(toStart)
    d.setDate(d.getDate() + 1) // next local midnight, DST-safe
    toMs = d.getTime()
  }
  return { fromMs, toMs }
}

/** "42", " #42 " → 42; anything else → null. */
export function parseRunId(q: string | undefined | null): number | null {
  const m = /^#?\s*(\d{1,15})$/.exec((q ?? '').trim())
  if (!m) return null
  const n = Number(m[1])
  return n > 0 && Number.isSafeInteger(n) ? n : null
}

/** Whether any client-side filter is set (the id box counts even when it is not a number). */
export function hasClientFilters(f: ClientRunFilters): boolean {
  return !!(f.from || f.to || (f.id ?? '').trim())
}

export function matchesRun(run: Run, f: ClientRunFilters): boolean {
  if (f.status && run.status !== f.status) return false
  if (f.app && run.app !== f.app) return false
  const idText = (f.id ?? '').trim()
  if (idText) {
    const id = parseRunId(idText)
    if (id === null || run.id !== id) return false
  }
  const { fromMs, toMs } = dateBounds(f.from, f.to)
  if (fromMs !== null || toMs !== null) {
    const t = Date.parse(run.queued_at)
    if (Number.isNaN(t)) return false
    if (fromMs !== null && t < fromMs) return false
    if (toMs !== null && t >= toMs) return false
  }
  return true
}

export interface FilteredPage {
  runs: Run[]
  /** another page of matches exists */
  hasMore: boolean
  /** stopped scanning before the oldest run: older matches may exist */
  truncated: boolean
}

export interface FilteredListOptions {
  /** one page of the server's list, newest first */
  fetchPage: (limit: number, offset: number) => Promise<Run[]>
  /** a run by id; resolves null when there is none */
  getRun: (id: number) => Promise<Run | null>
  filters: ClientRunFilters
  offset: number
  limit: number
  /** server page size while scanning (its maximum is 500) */
  batch?: number
  /** give up after this many runs were scanned */
  maxScan?: number
}

/**
 * A page of runs matching client-side filters. A run id is looked up directly; a date range
 * pages through the newest-first list until it passes the range's start (or maxScan).
 */
export async function listRunsFiltered(o: FilteredListOptions): Promise<FilteredPage> {
  const { filters: f, offset, limit } = o
  const idText = (f.id ?? '').trim()
  if (idText) {
    const id = parseRunId(idText)
    const run = id === null ? null : await o.getRun(id)
    const runs = run && matchesRun(run, f) && offset === 0 ? [run] : []
    return { runs, hasMore: false, truncated: false }
  }
  const batch = o.batch ?? 500
  const maxScan = o.maxScan ?? 5000
  const { fromMs } = dateBounds(f.from, f.to)
  const want = offset + limit + 1 // one more tells whether there is a next page
  const matches: Run[] = []
  let scanned = 0
  let truncated = false
  for (;;) {
    const page = await o.fetchPage(batch, scanned)
    scanned += page.length
    let passedStart = false
    for (const r of page) {
      if (matchesRun(r, f)) matches.push(r)
      else if (fromMs !== null && Date.parse(r.queued_at) < fromMs) passedStart = true
    }
    if (matches.length >= want || passedStart || page.length < batch) break
    if (scanned >= maxScan) {
      truncated = true
      break
    }
  }
  return {
    runs: matches.slice(offset, offset + limit),
    hasMore: matches.length > offset + limit,
    truncated: truncated && matches.length <= offset + limit,
  }
}
