import { afterEach, describe, expect, it, vi } from 'vitest'
import { effectScope, ref } from 'vue'
import { api } from '../src/api/client'
import { useLogStream } from '../src/composables/useLogStream'

function sse(text: string): Response {
  const bytes = new TextEncoder().encode(text)
  return new Response(
    new ReadableStream({
      start(c) {
        c.enqueue(bytes)
        c.close()
      },
    }),
    { status: 200, headers: { 'Content-Type': 'text/event-stream' } },
  )
}

const log = (seq: number, line: string, stream = 'stdout') =>
  `event: log\nid: ${seq}\ndata: ${JSON.stringify({ seq, attempt_no: 1, stream, line, logged_at: '2026-11-22T10:00:00Z' })}\n\n`

afterEach(() => {
  vi.unstubAllGlobals()
  api.setToken(null)
})

describe('useLogStream', () => {
  it('reconnects after a drop with after_seq = last seq, de-duplicates, and reports the end', async () => {
    const urls: string[] = []
    const f = vi.fn(async (url: string) => {
      urls.push(url)
      if (urls.length === 1) return sse(log(1, 'one') + log(2, 'two', 'stderr')) // drops without `end`
      return sse(log(2, 'two', 'stderr') + log(3, 'three', 'setup') + 'event: end\ndata: {"status":"completed"}\n\n')
    })
    vi.stubGlobal('fetch', f)
    api.setToken('t')
    const onEnd = vi.fn()
    const scope = effectScope()
    const s = scope.run(() => useLogStream(ref('42'), onEnd))!
    await vi.waitFor(() => expect(s.state.value).toBe('ended'), { timeout: 4000 })
    expect(urls).toEqual(['/api/v1/runs/42/logs/stream?after_seq=0', '/api/v1/runs/42/logs/stream?after_seq=2'])
    expect(s.lines.value.map((l) => [l.seq, l.stream, l.line])).toEqual([
      [1, 'stdout', 'one'],
      [2, 'stderr', 'two'],
      [3, 'setup', 'three'],
    ])
    expect(onEnd).toHaveBeenCalledWith('completed')
    expect(s.endStatus.value).toBe('completed')
    scope.stop()
  })

  it('stops on a 404 without retrying', async () => {
    const f = vi.fn(async () => new Response(JSON.stringify({ error: { code: 'not_found', message: 'no such run' } }), { status: 404 }))
    vi.stubGlobal('fetch', f)
    const scope = effectScope()
    const s = scope.run(() => useLogStream(ref('9')))!
    await vi.waitFor(() => expect(s.state.value).toBe('error'))
    expect(s.error.value).toBe('no such run')
    expect(f).toHaveBeenCalledOnce()
    scope.stop()
  })
})
