import { onScopeDispose, ref, type Ref } from 'vue'

// Shared ticking clocks for relative times and running durations: one timer per interval,
// so every timestamp on a page re-renders together. The timer stops when nobody listens.
const clocks = new Map<number, { now: Ref<number>; users: number; timer: ReturnType<typeof setInterval> | null }>()

export function useNow(intervalMs = 15_000): Ref<number> {
  let c = clocks.get(intervalMs)
  if (!c) {
    c = { now: ref(Date.now()), users: 0, timer: null }
    clocks.set(intervalMs, c)
  }
  const clock = c
  clock.users++
  clock.now.value = Date.now()
  clock.timer ??= setInterval(() => (clock.now.value = Date.now()), intervalMs)
  onScopeDispose(() => {
    clock.users--
    if (clock.users === 0 && clock.timer) {
      clearInterval(clock.timer)
      clock.timer = null
    }
  })
  return clock.now
}
