import { describe, expect, it, vi } from 'vitest'
import type { Run } from '../src/api/types'
import { dateBounds, hasClientFilters, listRunsFiltered, matchesRun, parseRunId } from '../src/lib/runFilters'

// Local-time ISO for a day and hour, as the date inputs mean local days.
const at = (day: string, hour = 12) => {
  const [y, m, d] = day.split('-').map(Number)
  return new Date(y, m - 1, d, hour).toISOString()
}
const run = (id: number, day: string, over: Partial<Run> = {}): Run =>
  ({ id, run_no: id, app: 'hello', version_no: 1, status: 'completed', queued_at: at(day), ...over }) as Run

describe('run id search', () => {
  it('parses ids as typed', () => {
    expect(parseRunId('42')).toBe(42)
    expect(parseRunId(' #42 ')).toBe(42)
    expect(parseRunId('# 7')).toBe(7)
    expect(parseRunId('')).toBeNull()
    expect(parseRunId('abc')).toBeNull()
    expect(parseRunId('0')).toBeNull()
    expect(parseRunId('4.2')).toBeNull()
  })
})

describe('date range', () => {
  it('is inclusive of whole local days', () => {
    const { fromMs, toMs } = dateBounds('2026-11-20', '2026-11-21')
    expect(fromMs).toBe(new Date(2026, 10, 20).getTime())
    expect(toMs).toBe(new Date(2026, 10, 22).getTime())
    expect(dateBounds('', 'nope')).toEqual({ fromMs: null, toMs: null })
    expect(dateBounds('2026-02-30').fromMs).toBeNull()
  })

  it('matches runs by queued_at, id, status and app', () => {
    const r = run(5, '2026-11-21', { queued_at: new Date(2026, 10, 21, 23, 59).toISOString() })
    expect(matchesRun(r, { from: '2026-11-21', to: '2026-11-21' })).toBe(true)
    expect(matchesRun(r, { from: '2026-11-22' })).toBe(false)
    expect(matchesRun(r, { to: '2026-11-20' })).toBe(false)
    expect(matchesRun(r, { id: '#5' })).toBe(true)
    expect(matchesRun(r, { id: '6' })).toBe(false)
    expect(matchesRun(r, { id: 'x' })).toBe(false)
    expect(matchesRun(r, { status: 'failed' })).toBe(false)
    expect(matchesRun(r, { app: 'other' })).toBe(false)
    expect(hasClientFilters({ status: 'failed', app: 'x' })).toBe(false)
    expect(hasClientFilters({ id: ' 3' })).toBe(true)
    expect(hasClientFilters({ from: '2026-11-21' })).toBe(true)
  })
})

describe('listRunsFiltered', () => {
  // 30 runs, newest first: ids 30..1, one per day ending on 2026-11-30.
  const all = Array.from({ length: 30 }, (_, i) => run(30 - i, `2026-11-${String(30 - i).padStart(2, '0')}`))
  const fetchPage = vi.fn(async (limit: number, offset: number) => all.slice(offset, offset + limit))

  it('looks a run id up directly', async () => {
    const getRun = vi.fn(async (id: number) => all.find((r) => r.id === id) ?? null)
    fetchPage.mockClear()
    const page = await listRunsFiltered({ fetchPage, getRun, filters: { id: '#12' }, offset: 0, limit: 10 })
    expect(page.runs.map((r) => r.id)).toEqual([12])
    expect(getRun).toHaveBeenCalledWith(12)
    expect(fetchPage).not.toHaveBeenCalled()
    expect((await listRunsFiltered({ fetchPage, getRun, filters: { id: '99' }, offset: 0, limit: 10 })).runs).toEqual([])
    // the other filters still apply (e.g. the app page's own app)
    expect((await listRunsFiltered({ fetchPage, getRun, filters: { id: '12', app: 'x' }, offset: 0, limit: 10 })).runs).toEqual([])
  })

  it('pages through the list for a date range and stops past its start', async () => {
    fetchPage.mockClear()
    const getRun = vi.fn()
    const o = { fetchPage, getRun, filters: { from: '2026-11-10', to: '2026-11-20' }, limit: 4, batch: 5 }
    const p1 = await listRunsFiltered({ ...o, offset: 0 })
    expect(p1.runs.map((r) => r.id)).toEqual([20, 19, 18, 17])
    expect(p1.hasMore).toBe(true)
    const p3 = await listRunsFiltered({ ...o, offset: 8 })
    expect(p3.runs.map((r) => r.id)).toEqual([12, 11, 10])
    expect(p3.hasMore).toBe(false)
    // runs 30..6 scanned at most: it stopped once it saw a run older than the range
    expect(Math.max(...fetchPage.mock.calls.map(([, off]) => off))).toBeLessThanOrEqual(20)
    expect(getRun).not.toHaveBeenCalled()
  })

  it('says when it gave up before the oldest run', async () => {
    const page = await listRunsFiltered({
      fetchPage,
      getRun: vi.fn(),
      filters: { to: '2026-11-01' },
      offset: 0,
      limit: 4,
      batch: 5,
      maxScan: 10,
    })
    expect(page.runs).toEqual([])
    expect(page.truncated).toBe(true)
  })
})
