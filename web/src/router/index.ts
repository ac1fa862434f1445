import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { useSessionStore } from '../stores/session'
import SignInPage from '../pages/SignInPage.vue'
import DashboardPage from '../pages/DashboardPage.vue'
import AppsPage from '../pages/AppsPage.vue'
import AppDetailPage from '../pages/AppDetailPage.vue'
import RunsPage from '../pages/RunsPage.vue'
import RunDetailPage from '../pages/RunDetailPage.vue'
import TokensPage from '../pages/TokensPage.vue'
import RunnersPage from '../pages/RunnersPage.vue'
import EnvironmentsPage from '../pages/EnvironmentsPage.vue'
import SecretsPage from '../pages/SecretsPage.vue'
import WebhooksPage from '../pages/WebhooksPage.vue'
import NotFoundPage from '../pages/NotFoundPage.vue'

declare module 'vue-router' {
  interface RouteMeta {
    /** reachable without a session */
    public?: boolean
    /** admin-only; members get a forbidden notice on the page itself */
    admin?: boolean
    title?: string
  }
}

export const routes: RouteRecordRaw[] = [
  { path: '/signin', name: 'signin', component: SignInPage, meta: { public: true, title: 'Sign in' } },
  { path: '/', name: 'dashboard', component: DashboardPage, meta: { title: 'Dashboard' } },
  { path: '/apps', name: 'apps', component: AppsPage, meta: { title: 'Apps' } },
  { path: '/apps/:slug', name: 'app', component: AppDetailPage, props: true, meta: { title: 'App' } },
  { path: '/runs', name: 'runs', component: RunsPage, meta: { title: 'Runs' } },
  { path: '/runs/:id', name: 'run', component: RunDetailPage, props: true, meta: { title: 'Run' } },
  { path: '/tokens', name: 'tokens', component: TokensPage, meta: { title: 'Tokens' } },
  { path: '/environments', name: 'environments', component: EnvironmentsPage, meta: { title: 'Environments' } },
  { path: '/secrets', name: 'secrets', component: SecretsPage, meta: { title: 'Secrets' } },
  { path: '/webhooks', name: 'webhooks', component: WebhooksPage, meta: { title: 'Webhooks' } },
  { path: '/runners', name: 'runners', component: RunnersPage, meta: { admin: true, title: 'Runners' } },
  { path: '/:pathMatch(.*)*', name: 'notfound', component: NotFoundPage, meta: { title: 'Not found' } },
]

export function createAppRouter() {
  const router = createRouter({ history: createWebHistory('/'), routes })
  router.beforeEach((to) => {
    const session = useSessionStore()
    if (to.meta.public) {
      if (to.name === 'signin' && session.isAuthenticated) {
        const r = typeof to.query.redirect === 'string' && to.query.redirect.startsWith('/') ? to.query.redirect : '/'
        return r
      }
      return true
    }
    if (!session.isAuthenticated) {
      return { name: 'signin', query: to.fullPath !== '/' ? { redirect: to.fullPath } : {} }
    }
    return true
  })
  router.afterEach((to) => {
    document.title = to.meta.title ? `${to.meta.title} · MiniTower` : 'MiniTower'
  })
  return router
}
