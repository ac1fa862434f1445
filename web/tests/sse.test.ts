import { describe, expect, it } from 'vitest'
import { readSse, SseParser, type SseEvent } from '../src/api/sse'

describe('SseParser', () => {
  it('parses events split across arbitrary chunks', () => {
    const text =
      'event: log\nid: 1\ndata: {"seq":1,"line":"Hello"}\n\n: keep-alive\n\nevent: end\ndata: {"status":"completed"}\n\n'
    for (const size of [1, 3, 7, text.length]) {
      const p = new SseParser()
      const out: SseEvent[] = []
      for (let i = 0; i < text.length; i += size) out.push(...p.push(text.slice(i, i + size)))
      expect(out).toEqual([
        { event: 'log', id: '1', data: '{"seq":1,"line":"Hello"}' },
        { event: 'end', id: '1', data: '{"status":"completed"}' },
      ])
    }
  })

  it('handles CRLF and CR line endings, even split between chunks', () => {
    const p = new SseParser()
    const out = [...p.push('data: a\r'), ...p.push('\n\r\ndata:b\r\r')]
    // The final lone \r could still be half of \r\n: it only counts once the stream ends.
    expect(out.map((e) => e.data)).toEqual(['a'])
    expect(p.end().map((e) => e.data)).toEqual(['b'])
  })

  it('joins multi-line data and defaults the event type', () => {
    const p = new SseParser()
    expect(p.push('data: one\ndata: two\n\n')).toEqual([{ event: 'message', data: 'one\ntwo', id: undefined }])
  })

  it('drops an unterminated event at end of stream', () => {
    const p = new SseParser()
    expect(p.push('event: log\ndata: x')).toEqual([])
    expect(p.end()).toEqual([])
  })
})

describe('readSse', () => {
  it('reads a byte stream, including multi-byte characters split across chunks', async () => {
    const bytes = new TextEncoder().encode('event: log\ndata: {"line":"héllo ✓"}\n\n')
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < bytes.length; i += 5) c.enqueue(bytes.slice(i, i + 5))
        c.close()
      },
    })
    const got: SseEvent[] = []
    await readSse(body, (e) => got.push(e))
    expect(got).toHaveLength(1)
    expect(JSON.parse(got[0].data).line).toBe('héllo ✓')
  })
})
