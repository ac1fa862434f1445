import { onScopeDispose, ref, shallowRef, watch, type Ref } from 'vue'
import { api, ApiError } from '../api/client'
import { readSse } from '../api/sse'
import type { LogLine } from '../api/types'

export type StreamState = 'connecting' | 'streaming' | 'reconnecting' | 'ended' | 'error'

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true })
  })
}

/**
 * Follows GET /runs/{id}/logs/stream. Lines are de-duplicated by seq; when the connection
 * drops before the `end` event it reconnects with after_seq = last seq seen (with backoff).
 * onEnd fires once with the terminal status from the `end` event.
 */
export function useLogStream(runId: Ref<string>, onEnd?: (status: string | null) => void) {
  const lines = shallowRef<LogLine[]>([])
  const state = ref<StreamState>('connecting')
  const endStatus = ref<string | null>(null)
  const error = ref<string | null>(null)
  let ctrl: AbortController | null = null
  // New lines are batched and published as a new array, so consumers see a changed prop.
  let pending: LogLine[] = []
  let flushTimer: ReturnType<typeof setTimeout> | null = null
  function flush() {
    flushTimer = null
    if (!pending.length) return
    lines.value = lines.value.concat(pending)
    pending = []
  }
  function add(l: LogLine) {
    pending.push(l)
    flushTimer ??= setTimeout(flush, 30)
  }

  async function follow(id: string, signal: AbortSignal) {
    let lastSeq = 0
    let delay = 500
    let connects = 0
    while (!signal.aborted) {
      let ended = false
      state.value = connects++ === 0 ? 'connecting' : 'reconnecting'
      try {
        const res = await api.openLogStream(id, lastSeq, signal)
        if (!res.body) throw new Error('streaming not supported by this browser')
        state.value = 'streaming'
        error.value = null
        await readSse(res.body, (ev) => {
          if (signal.aborted) return
          if (ev.event === 'log') {
            const l = JSON.parse(ev.data) as LogLine
            if (typeof l.seq === 'number' && l.seq <= lastSeq) return
            lastSeq = typeof l.seq === 'number' ? l.seq : lastSeq
            add(l)
            delay = 500
          } else if (ev.event === 'end') {
            ended = true
            try {
              endStatus.value = (JSON.parse(ev.data) as { status?: string }).status ?? null
            } catch {
              endStatus.value = null
            }
          }
        })
      } catch (e) {
        if (signal.aborted) return
        // These will not get better by retrying (401 also ends the session via the client).
        if (e instanceof ApiError && [400, 401, 403, 404].includes(e.status)) {
          error.value = e.message
          state.value = 'error'
          return
        }
        error.value = e instanceof Error ? e.message : String(e)
      }
      if (signal.aborted) return
      if (ended) {
        flush()
        state.value = 'ended'
        onEnd?.(endStatus.value)
        return
      }
      state.value = 'reconnecting'
      await sleep(delay, signal)
      delay = Math.min(delay * 2, 5000)
    }
  }

  watch(
    runId,
    (id) => {
      ctrl?.abort()
      if (flushTimer) clearTimeout(flushTimer)
      flushTimer = null
      pending = []
      lines.value = []
      endStatus.value = null
      error.value = null
      ctrl = new AbortController()
      if (id) void follow(id, ctrl.signal)
    },
    { immediate: true },
  )
  onScopeDispose(() => ctrl?.abort())

  return { lines, state, endStatus, error }
}
