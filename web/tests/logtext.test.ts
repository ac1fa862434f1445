import { describe, expect, it } from 'vitest'
import type { LogLine } from '../src/api/types'
import { findMatches, highlight, logAsText } from '../src/lib/logtext'

const l = (seq: number, line: string, stream = 'stdout', attempt_no = 1): LogLine => ({
  seq,
  attempt_no,
  stream,
  line,
  logged_at: '2026-11-22T10:00:00Z',
})

describe('log search', () => {
  const lines = [l(1, 'Hello, World'), l(2, 'error: boom', 'stderr'), l(3, 'HELLO again')]
  it('finds lines case-insensitively', () => {
    expect(findMatches(lines, 'hello')).toEqual([0, 2])
    expect(findMatches(lines, 'BOOM')).toEqual([1])
    expect(findMatches(lines, '')).toEqual([])
    expect(findMatches(lines, 'zzz')).toEqual([])
  })
  it('splits a line around every match', () => {
    expect(highlight('aXbxc', 'x')).toEqual([
      { text: 'a', hit: false },
      { text: 'X', hit: true },
      { text: 'b', hit: false },
      { text: 'x', hit: true },
      { text: 'c', hit: false },
    ])
    expect(highlight('abc', '')).toEqual([{ text: 'abc', hit: false }])
    expect(highlight('abc', 'abc')).toEqual([{ text: 'abc', hit: true }])
    expect(highlight('', 'a')).toEqual([{ text: '', hit: false }])
  })
})

describe('log download text', () => {
  it('is the lines, with stream prefixes for non-stdout', () => {
    expect(logAsText([l(1, 'one'), l(2, 'two', 'stderr'), l(3, 'pip install', 'setup')])).toBe(
      'one\n[stderr] two\n[setup] pip install\n',
    )
    expect(logAsText([])).toBe('')
  })
  it('separates attempts', () => {
    expect(logAsText([l(1, 'a', 'stdout', 1), l(2, 'b', 'stdout', 2)])).toBe(
      '=== attempt 1 ===\na\n=== attempt 2 ===\nb\n',
    )
  })
})
