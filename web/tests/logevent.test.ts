import { describe, expect, it } from 'vitest'
import type { LogLine } from '../src/api/types'
import { formatBytes } from '../src/lib/format'
import { describeEvent, parseEvent } from '../src/lib/logevent'
import { findMatches, logAsText, visibleText } from '../src/lib/logtext'

const ev = (line: string, stream = 'event', seq = 1): LogLine => ({
  seq,
  attempt_no: 1,
  stream,
  line,
  logged_at: '2026-11-22T10:00:00Z',
})
const text = (line: string) => {
  const e = parseEvent(ev(line))
  return e ? describeEvent(e).text : null
}

describe('lifecycle events', () => {
  it('formats started with pid, runner, attempt and how limits are enforced', () => {
    expect(text('{"event":"started","pid":1234,"runner":"runner-1","attempt":2,"limits":"cgroup v1"}')).toBe(
      '▶ started · pid 1234 · runner-1 · attempt 2 · limits: cgroup v1',
    )
    expect(text('{"event":"started"}')).toBe('▶ started')
  })

  it('formats finished with exit code, duration and peak memory', () => {
    const line = '{"event":"finished","exit_code":0,"signal":null,"duration_ms":1234,"peak_memory_bytes":35651584,"reason":null}'
    const d = describeEvent(parseEvent(ev(line))!)
    expect(d.text).toBe('■ finished · exit 0 · 1.2 s · peak 34 MiB')
    expect(d.tone).toBe('ok')
    expect(describeEvent(parseEvent(ev('{"event":"finished","exit_code":3,"duration_ms":12}'))!)).toEqual({
      kind: 'finished',
      text: '■ finished · exit 3 · 12 ms',
      tone: 'bad',
    })
  })

  it('says which signal killed the process and why', () => {
    const line =
      '{"event":"finished","exit_code":null,"signal":"SIGKILL","duration_ms":800,"peak_memory_bytes":268435456,"reason":"memory limit 256 MiB exceeded"}'
    const d = describeEvent(parseEvent(ev(line))!)
    expect(d.text).toBe('■ finished · killed by SIGKILL · memory limit 256 MiB exceeded · 800 ms · peak 256 MiB')
    expect(d.tone).toBe('bad')
  })

  it('leaves out fields of the wrong type and shows unknown events by name', () => {
    expect(text('{"event":"started","pid":"x","runner":7}')).toBe('▶ started')
    expect(text('{"event":"oom_warning","used":123,"nested":{"a":1}}')).toBe('● oom_warning · used 123')
  })

  it('treats malformed lines as no event', () => {
    for (const bad of ['not json', '{"event":', '[1,2]', '"started"', '{"pid":1}', '{"event":""}', 'null']) {
      expect(parseEvent(ev(bad)), bad).toBeNull()
    }
    // only the event stream carries events
    expect(parseEvent(ev('{"event":"started"}', 'stdout'))).toBeNull()
  })

  it('is searched and downloaded as its summary; a malformed one as its text', () => {
    const lines = [ev('{"event":"started","pid":42}', 'event', 1), ev('hello', 'stdout', 2), ev('{oops', 'event', 3)]
    expect(visibleText(lines[0])).toBe('▶ started · pid 42')
    expect(findMatches(lines, 'pid 42')).toEqual([0])
    expect(findMatches(lines, 'oops')).toEqual([2])
    expect(findMatches(lines, '"event"')).toEqual([]) // the JSON itself is not what shows
    expect(logAsText(lines)).toBe('[event] ▶ started · pid 42\nhello\n[event] {oops\n')
  })
})

describe('log text with escape sequences', () => {
  it('is matched and downloaded without them', () => {
    const lines = [ev('\x1b[31mred\x1b[0m alert', 'stdout', 1), ev('50%\r\x1b[Kdone', 'stdout', 2)]
    expect(findMatches(lines, 'red alert')).toEqual([0])
    expect(findMatches(lines, '[31m')).toEqual([])
    expect(findMatches(lines, '50%')).toEqual([])
    expect(logAsText(lines)).toBe('red alert\ndone\n')
  })
})

describe('formatBytes', () => {
  it('uses binary units', () => {
    expect(formatBytes(12)).toBe('12 B')
    expect(formatBytes(1536)).toBe('1.5 KiB')
    expect(formatBytes(268435456)).toBe('256 MiB')
    expect(formatBytes(1073741824)).toBe('1 GiB')
    expect(formatBytes(35651584)).toBe('34 MiB')
  })
})
