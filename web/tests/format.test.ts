import { describe, expect, it } from 'vitest'
import {
  attemptSummary,
  exitSummary,
  formatDuration,
  percent,
  relativeTime,
  runDuration,
  shortSha,
  versionLabel,
  wallClock,
} from '../src/lib/format'

describe('format helpers', () => {
  const now = Date.parse('2026-11-22T10:00:00Z')
  it('relative times', () => {
    expect(relativeTime('2026-11-22T09:57:00Z', now)).toBe('3 minutes ago')
    expect(relativeTime('2026-11-22T09:59:58Z', now)).toBe('just now')
    expect(relativeTime('2026-11-21T10:00:00Z', now)).toBe('yesterday')
    expect(relativeTime(null, now)).toBe('—')
  })
  it('durations', () => {
    expect(formatDuration(0.42)).toBe('420 ms')
    expect(formatDuration(1.2)).toBe('1.2 s')
    expect(formatDuration(75)).toBe('1m 15s')
    expect(formatDuration(3700)).toBe('1h 1m')
    expect(formatDuration(null)).toBe('—')
    expect(runDuration({ started_at: '2026-11-22T09:59:00Z', finished_at: null }, now)).toBe(60)
  })
  it('misc', () => {
    expect(shortSha('abcdef0123456789')).toBe('abcdef012345')
    expect(percent(0.75)).toBe('75.0%')
    expect(percent(null)).toBe('—')
  })

  it('version labels take the number the API sends', () => {
    expect(versionLabel(3)).toBe('v3')
    expect(versionLabel(null)).toBe('—')
    expect(versionLabel(undefined)).toBe('—')
  })

  it('exit summaries', () => {
    expect(exitSummary({ exit_code: 0, error_message: null })).toBe('0')
    expect(exitSummary({ exit_code: 1, error_message: 'boom' })).toBe('1 · boom')
    expect(exitSummary({ exit_code: null, error_message: 'lease expired' })).toBe('lease expired')
    expect(exitSummary({ exit_code: null, error_message: null })).toBe('—')
  })
})

describe('wallClock', () => {
  it('keeps a schedule time on its own zone\'s clock', () => {
    expect(wallClock('2026-11-30T09:00:00+01:00')).toBe('2026-11-30 09:00:00 (+01:00)')
    expect(wallClock('2026-07-01T09:00:00+02:00')).toBe('2026-07-01 09:00:00 (+02:00)')
    expect(wallClock('2026-11-30T00:00:00Z')).toBe('2026-11-30 00:00:00 (UTC)')
    expect(wallClock('2026-11-30T00:00:00.000Z')).toBe('2026-11-30 00:00:00 (UTC)')
    expect(wallClock('not a time')).toBe('not a time')
  })
})

describe('attemptSummary', () => {
  const now = Date.parse('2026-11-29T10:00:00Z')
  it('counts attempts against the failure-retry budget', () => {
    expect(attemptSummary({ status: 'running', failure_retries: 3, failure_retry_count: 0, not_before: null }, 1, now)).toBe(
      'attempt 1 of 4',
    )
    expect(attemptSummary({ status: 'completed', failure_retries: 2, failure_retry_count: 2 }, 3, now)).toBe(
      'attempt 3 of 3 · 2 failure retries used',
    )
    // older servers send no budget: one attempt
    expect(attemptSummary({ status: 'queued' }, 0, now)).toBe('attempt 1 of 1')
  })
  it('says when a waiting run retries', () => {
    const s = attemptSummary(
      { status: 'queued', failure_retries: 3, failure_retry_count: 1, not_before: '2026-11-29T10:00:03Z' },
      1,
      now,
    )
    expect(s).toMatch(/^attempt 2 of 4 · 1 failure retry used, retry at .+ \(in 3 s\)$/)
    // past its time, it is simply queued for attempt 2
    expect(
      attemptSummary({ status: 'queued', failure_retries: 3, failure_retry_count: 1, not_before: '2026-11-29T09:59:00Z' }, 1, now),
    ).toBe('attempt 2 of 4 · 1 failure retry used')
  })
})
