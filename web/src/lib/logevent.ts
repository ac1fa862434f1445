// Lifecycle events in the log stream: a line with stream "event" whose text is compact JSON
// written by the runner ({"event":"started",...} / {"event":"finished",...}). The viewer shows
// each as one short row; a line that is not such an object stays plain text.
import type { LifecycleEvent, LogLine } from '../api/types'
import { formatBytes, formatDuration } from './format'

export const EVENT_STREAM = 'event'

/** The event a line carries, or null (another stream, not JSON, no "event" name). */
export function parseEvent(l: Pick<LogLine, 'stream' | 'line'>): LifecycleEvent | null {
  if (l.stream !== EVENT_STREAM) return null
  let v: unknown
  try {
    v = JSON.parse(l.line)
  } catch {
    return null
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return null
  const ev = v as Record<string, unknown>
  return typeof ev.event === 'string' && ev.event ? (ev as unknown as LifecycleEvent) : null
}

const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v)
const str = (v: unknown): v is string => typeof v === 'string' && v !== ''

export type EventTone = 'ok' | 'bad' | 'info'

export interface EventSummary {
  kind: string
  /** One line: "▶ started · pid 1234 · runner-1 · attempt 2 · limits: cgroup v1". */
  text: string
  tone: EventTone
}

/** The row text of an event; fields that are missing or of the wrong type are left out. */
export function describeEvent(ev: LifecycleEvent): EventSummary {
  const e = ev as unknown as Record<string, unknown>
  const parts: string[] = []
  let tone: EventTone = 'info'
  let head: string
  if (ev.event === 'started') {
    head = '▶ started'
    if (num(e.pid)) parts.push(`pid ${e.pid}`)
    if (str(e.runner)) parts.push(e.runner)
    if (num(e.attempt)) parts.push(`attempt ${e.attempt}`)
    if (str(e.limits)) parts.push(`limits: ${e.limits}`)
  } else if (ev.event === 'finished') {
    head = '■ finished'
    if (str(e.signal)) {
      parts.push(`killed by ${e.signal}`)
      tone = 'bad'
    } else if (num(e.exit_code)) {
      parts.push(`exit ${e.exit_code}`)
      tone = e.exit_code === 0 ? 'ok' : 'bad'
    }
    if (str(e.reason)) {
      parts.push(e.reason)
      tone = 'bad'
    }
    if (num(e.duration_ms)) parts.push(formatDuration(e.duration_ms / 1000))
    if (num(e.peak_memory_bytes)) parts.push(`peak ${formatBytes(e.peak_memory_bytes)}`)
  } else {
    // An event this UI does not know yet: its name and scalar fields.
    head = `● ${ev.event}`
    for (const [k, v] of Object.entries(e)) {
      if (k !== 'event' && (num(v) || str(v) || typeof v === 'boolean')) parts.push(`${k} ${v}`)
    }
  }
  return { kind: ev.event, text: [head, ...parts].join(' · '), tone }
}
