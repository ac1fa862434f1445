import { createApp, watch } from 'vue'
import { createPinia } from 'pinia'
import { QueryClient, VueQueryPlugin } from '@tanstack/vue-query'
import App from './App.vue'
import { api, ApiError } from './api/client'
import { createAppRouter } from './router'
import { useConnectivityStore } from './stores/connectivity'
import { useSessionStore } from './stores/session'
import { useThemeStore } from './stores/theme'
import './style.css'

const app = createApp(App)
const pinia = createPinia()
app.use(pinia)

const session = useSessionStore(pinia)
session.rehydrate()
useThemeStore(pinia)

const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      // Client errors (4xx) will not fix themselves; only retry network/server errors.
      retry: (count, err) => !(err instanceof ApiError && err.status >= 400 && err.status < 500) && count < 2,
      staleTime: 5_000,
    },
  },
})
app.use(VueQueryPlugin, { queryClient })

// Server unreachable: an app-wide banner; /health is probed until it answers, then data refreshes.
const connectivity = useConnectivityStore(pinia)
connectivity.configure({
  probe: () => api.health(AbortSignal.timeout(5000)),
  onRecovered: () => void queryClient.invalidateQueries(),
})
api.onReachability((ok, error) => connectivity.report(ok, error))
connectivity.startHeartbeat(30_000)

const router = createAppRouter()
app.use(router)

// Any 401 on a session call: the client already dropped the token; end the session visibly.
api.onUnauthorized(() => {
  const cur = router.currentRoute.value
  session.logout()
  void router.replace({
    name: 'signin',
    query: { expired: '1', ...(cur.meta.public ? {} : { redirect: cur.fullPath }) },
  })
})

// Never show one session's cached data to the next.
watch(
  () => session.token,
  () => queryClient.clear(),
)

void router.isReady().then(() => app.mount('#app'))
