import { describe, expect, it } from 'vitest'
import { formatDuration, percent, relativeTime, runDuration, shortSha } from '../src/lib/format'

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
})
