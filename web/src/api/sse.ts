// Minimal text/event-stream parser. EventSource cannot send an Authorization header,
// so the log stream is read with fetch() and parsed here (WHATWG SSE rules, subset).

export interface SseEvent {
  event: string
  data: string
  id?: string
}

export class SseParser {
  private buf = ''
  private dataLines: string[] = []
  private eventType = ''
  private lastId: string | undefined

  /** Feeds decoded text; returns the events completed by it. */
  push(chunk: string): SseEvent[] {
    this.buf += chunk
    const out: SseEvent[] = []
    for (;;) {
      const i = this.buf.search(/[\r\n]/)
      if (i < 0) break
      // A lone trailing \r may be the first half of \r\n: wait for the next chunk.
      if (this.buf[i] === '\r' && i === this.buf.length - 1) break
      const line = this.buf.slice(0, i)
      const skip = this.buf[i] === '\r' && this.buf[i + 1] === '\n' ? 2 : 1
      this.buf = this.buf.slice(i + skip)
      const ev = this.line(line)
      if (ev) out.push(ev)
    }
    return out
  }

  /** Call at end of stream: an unterminated event is dropped, as the spec says. */
  end(): SseEvent[] {
    const out: SseEvent[] = []
    if (this.buf.endsWith('\r')) {
      this.buf = this.buf.slice(0, -1)
      const ev = this.line(this.buf)
      this.buf = ''
      if (ev) out.push(ev)
    }
    return out
  }

  private line(line: string): SseEvent | null {
    if (line === '') return this.dispatch()
    if (line.startsWith(':')) return null // comment / keep-alive
    const colon = line.indexOf(':')
    const field = colon < 0 ? line : line.slice(0, colon)
    let value = colon < 0 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    switch (field) {
      case 'event':
        this.eventType = value
        break
      case 'data':
        this.dataLines.push(value)
        break
      case 'id':
        if (!value.includes('\0')) this.lastId = value
        break
      default:
        break // 'retry' and unknown fields are ignored
    }
    return null
  }

  private dispatch(): SseEvent | null {
    if (this.dataLines.length === 0) {
      this.eventType = ''
      return null
    }
    const ev: SseEvent = { event: this.eventType || 'message', data: this.dataLines.join('\n'), id: this.lastId }
    this.dataLines = []
    this.eventType = ''
    return ev
  }
}

/** Reads a fetch() body as SSE, calling onEvent for each event until the body ends. */
export async function readSse(body: ReadableStream<Uint8Array>, onEvent: (ev: SseEvent) => void): Promise<void> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  const parser = new SseParser()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      for (const ev of parser.push(decoder.decode(value, { stream: true }))) onEvent(ev)
    }
    for (const ev of parser.push(decoder.decode())) onEvent(ev)
    for (const ev of parser.end()) onEvent(ev)
  } finally {
    reader.releaseLock()
  }
}
