import type { LogLine } from '../api/types'
import { stripAnsi } from './ansi'
import { describeEvent, parseEvent } from './logevent'

// Lines never change once received: their visible text is worked out once.
const visible = new WeakMap<LogLine, string>()

/**
 * What a line shows: an event's summary row, or the text with its escape sequences
 * resolved and removed. Search matches it; a download holds it.
 */
export function visibleText(l: LogLine): string {
  let t = visible.get(l)
  if (t === undefined) {
    const ev = parseEvent(l)
    t = ev ? describeEvent(ev).text : stripAnsi(l.line)
    visible.set(l, t)
  }
  return t
}

/** Indexes (into lines) of the lines whose visible text contains q, case-insensitively; [] for an empty q. */
export function findMatches(lines: readonly LogLine[], q: string): number[] {
  const needle = q.toLowerCase()
  if (!needle) return []
  const out: number[] = []
  lines.forEach((l, i) => {
    if (visibleText(l).toLowerCase().includes(needle)) out.push(i)
  })
  return out
}

export interface Segment {
  text: string
  hit: boolean
}

/** Splits text around every case-insensitive occurrence of q, for highlighting. */
export function highlight(text: string, q: string): Segment[] {
  if (!q) return [{ text, hit: false }]
  const lower = text.toLowerCase()
  const needle = q.toLowerCase()
  const out: Segment[] = []
  let at = 0
  for (;;) {
    const i = lower.indexOf(needle, at)
    if (i < 0) break
    if (i > at) out.push({ text: text.slice(at, i), hit: false })
    out.push({ text: text.slice(i, i + needle.length), hit: true })
    at = i + needle.length
  }
  if (at < text.length || !out.length) out.push({ text: text.slice(at), hit: false })
  return out
}

/**
 * The log as plain text, one line per log line, as the viewer shows it (colours and other
 * escape sequences removed, events as their summary). Lines of another attempt follow a
 * "=== attempt N ===" separator; stderr, setup and event lines carry a prefix so nothing is lost.
 */
export function logAsText(lines: readonly LogLine[]): string {
  const out: string[] = []
  let attempt: number | null = null
  const multi = lines.some((l) => l.attempt_no !== lines[0]?.attempt_no) || (lines[0]?.attempt_no ?? 1) > 1
  for (const l of lines) {
    if (multi && l.attempt_no !== attempt) out.push(`=== attempt ${l.attempt_no} ===`)
    attempt = l.attempt_no
    out.push(l.stream === 'stdout' ? visibleText(l) : `[${l.stream}] ${visibleText(l)}`)
  }
  return out.length ? out.join('\n') + '\n' : ''
}

/** Offers text to the browser as a file download. */
export function downloadText(filename: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain;charset=utf-8' }))
  const a = document.createElement('a')
  a.href = url
  a.download = filename
  a.style.display = 'none'
  document.body.appendChild(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(url), 1000)
}
