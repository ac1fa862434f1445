import { onScopeDispose, ref } from 'vue'

// One shared ticking clock for relative times, so every timestamp re-renders together.
const now = ref(Date.now())
let users = 0
let timer: ReturnType<typeof setInterval> | null = null

export function useNow() {
  users++
  if (!timer) timer = setInterval(() => (now.value = Date.now()), 15_000)
  onScopeDispose(() => {
    users--
    if (users === 0 && timer) {
      clearInterval(timer)
      timer = null
    }
  })
  return now
}
