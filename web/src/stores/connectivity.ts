import { defineStore } from 'pinia'
import { ref } from 'vue'

/** Backoff of the /health probe while the server is unreachable. */
export const PROBE_FIRST_MS = 2_000
export const PROBE_MAX_MS = 10_000

/**
 * Whether the control plane answers. The API client reports every outcome (report(false) for a
 * request that got no answer, or a 502/503/504 from a proxy in front); while it is down, /health
 * is probed with backoff so the app notices recovery even when nothing else is polling.
 */
export const useConnectivityStore = defineStore('connectivity', () => {
  const reachable = ref(true)
  /** ms timestamp of the first failure of the current outage */
  const downSince = ref<number | null>(null)
  const lastError = ref('')
  const probing = ref(false)

  let probe: (() => Promise<unknown>) | null = null
  let recovered: (() => void) | null = null
  let timer: ReturnType<typeof setTimeout> | null = null
  let delay = PROBE_FIRST_MS

  /** probe: a request whose outcome reaches report() (GET /health); onRecovered: refresh data. */
  function configure(opts: { probe: () => Promise<unknown>; onRecovered?: () => void }) {
    probe = opts.probe
    recovered = opts.onRecovered ?? null
  }

  function schedule() {
    if (timer) clearTimeout(timer)
    timer = setTimeout(() => {
      timer = null
      void checkNow()
    }, delay)
    delay = Math.min(PROBE_MAX_MS, Math.round(delay * 1.5))
  }

  function report(ok: boolean, error = '') {
    if (ok) {
      if (reachable.value) return
      reachable.value = true
      downSince.value = null
      lastError.value = ''
      if (timer) clearTimeout(timer)
      timer = null
      recovered?.()
      return
    }
    lastError.value = error
    if (!reachable.value) return
    reachable.value = false
    downSince.value = Date.now()
    delay = PROBE_FIRST_MS
    schedule()
  }

  /** Probes now (the banner's "Retry now"); reschedules while still down. */
  async function checkNow() {
    if (!probe || probing.value) return
    probing.value = true
    try {
      await probe()
    } catch {
      /* the outcome arrives through report() */
    } finally {
      probing.value = false
    }
    if (!reachable.value && !timer) schedule()
  }

  /**
   * While the server answers, probe it every `ms` anyway (only when the tab is visible), so an
   * outage shows even on a page that polls nothing.
   */
  let heartbeat: ReturnType<typeof setInterval> | null = null
  function startHeartbeat(ms: number) {
    if (heartbeat) clearInterval(heartbeat)
    heartbeat = setInterval(() => {
      const hidden = typeof document !== 'undefined' && document.visibilityState === 'hidden'
      if (reachable.value && !hidden) void checkNow()
    }, ms)
  }

  return { reachable, downSince, lastError, probing, configure, report, checkNow, startHeartbeat }
})
