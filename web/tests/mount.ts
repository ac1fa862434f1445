// Mounts a component with the app's plugins (Pinia, vue-query, a memory router) into happy-dom.
import type { Run } from '../src/api/types'
import { createApp, defineComponent, h, nextTick, type Component } from 'vue'
import { createPinia, setActivePinia } from 'pinia'
import { QueryClient, VueQueryPlugin } from '@tanstack/vue-query'
import { createMemoryHistory, createRouter } from 'vue-router'
import { vi } from 'vitest'

const Blank = defineComponent({ render: () => h('div') })

export async function mount(comp: Component, props: Record<string, unknown> = {}, path = '/') {
  const pinia = createPinia()
  setActivePinia(pinia)
  const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false } } })
  const router = createRouter({
    history: createMemoryHistory(),
    routes: [{ path: '/:p(.*)*', component: Blank }],
  })
  await router.push(path)
  await router.isReady()
  const el = document.createElement('div')
  document.body.appendChild(el)
  const app = createApp({ render: () => h(comp, props) })
  app.use(pinia).use(VueQueryPlugin, { queryClient }).use(router)
  app.mount(el)
  return {
    el,
    router,
    queryClient,
    unmount: () => {
      app.unmount()
      el.remove()
    },
  }
}

/** Lets fetches, query updates and renders settle. */
export async function settle(rounds = 8) {
  for (let i = 0; i < rounds; i++) {
    await new Promise((r) => setTimeout(r, 0))
    await nextTick()
  }
}

export async function waitFor<T>(fn: () => T | null | undefined | false, what = 'condition', timeout = 2000): Promise<T> {
  const deadline = Date.now() + timeout
  for (;;) {
    const v = fn()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await settle(1)
  }
}

export const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })

/** Stubs fetch with "METHOD /path?query" → handler; unknown requests fail the test loudly. */
export function routes(table: Record<string, (init: RequestInit, url: string) => Response | Promise<Response>>) {
  const f = vi.fn(async (url: string, init: RequestInit = {}) => {
    const key = `${init.method ?? 'GET'} ${url}`
    const path = key.split('?')[0]
    const handler = table[key] ?? table[path]
    if (!handler) throw new Error(`unexpected request ${key}`)
    return handler(init, url)
  })
  vi.stubGlobal('fetch', f)
  return f
}

export const byTestId = (root: ParentNode, id: string) => root.querySelector<HTMLElement>(`[data-testid="${id}"]`)
export const allByTestId = (root: ParentNode, id: string) => [...root.querySelectorAll<HTMLElement>(`[data-testid="${id}"]`)]

/** A finished run as the API sends it, with `over` changed. */
export const fakeRun = (over: Partial<Run>): Run => ({
  id: 1,
  run_no: 1,
  app: 'hello',
  version_no: 1,
  status: 'completed',
  input: {},
  priority: 0,
  max_retries: 0,
  retry_count: 0,
  cancel_requested: false,
  exit_code: 0,
  error_message: null,
  queued_at: '2026-11-22T10:00:00Z',
  started_at: '2026-11-22T10:00:01Z',
  finished_at: '2026-11-22T10:00:02Z',
  environment: 'default',
  ...over,
})
