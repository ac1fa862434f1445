import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api, ApiError } from '../api/client'
import type { Role, Team } from '../api/types'

export const SESSION_KEY = 'minitower.session'

interface Persisted {
  token: string
  team: Team
  role: Role
  tokenId: number | null
}

function readPersisted(): Persisted | null {
  try {
    const raw = localStorage.getItem(SESSION_KEY)
    if (!raw) return null
    const v = JSON.parse(raw) as Partial<Persisted>
    if (typeof v.token !== 'string' || !v.token) return null
    if (!v.team || typeof v.team.slug !== 'string') return null
    if (v.role !== 'admin' && v.role !== 'member') return null
    return { token: v.token, team: v.team, role: v.role, tokenId: typeof v.tokenId === 'number' ? v.tokenId : null }
  } catch {
    return null // corrupt entry: behave as signed out
  }
}

/** Session state: who is signed in, with which token and role. Mirrored to localStorage. */
export const useSessionStore = defineStore('session', () => {
  const token = ref<string | null>(null)
  const team = ref<Team | null>(null)
  const role = ref<Role | null>(null)
  const tokenId = ref<number | null>(null)

  const isAuthenticated = computed(() => !!token.value)
  const isAdmin = computed(() => role.value === 'admin')

  function apply(p: Persisted | null, persist: boolean) {
    token.value = p?.token ?? null
    team.value = p?.team ?? null
    role.value = p?.role ?? null
    tokenId.value = p?.tokenId ?? null
    api.setToken(token.value)
    if (!persist) return
    try {
      if (p) localStorage.setItem(SESSION_KEY, JSON.stringify(p))
      else localStorage.removeItem(SESSION_KEY)
    } catch {
      /* storage unavailable (private mode): session lives in memory only */
    }
  }

  /** Team slug + password. The login answer is an admin token; /me confirms role and token id. */
  async function login(slug: string, password: string): Promise<void> {
    const res = await api.login(slug.trim(), password)
    let p: Persisted = { token: res.token, team: res.team, role: 'admin', tokenId: null }
    try {
      const me = await api.me(res.token)
      p = { token: res.token, team: me.team, role: me.role, tokenId: me.token_id ?? null }
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) throw e
      // Anything else: keep what login told us.
    }
    apply(p, true)
  }

  /** A pasted team token, validated with GET /me before it is kept. */
  async function signInWithToken(raw: string): Promise<void> {
    const t = raw.trim()
    if (!t) throw new ApiError(400, 'invalid_request', 'Paste a token first.')
    const me = await api.me(t)
    apply({ token: t, team: me.team, role: me.role, tokenId: me.token_id ?? null }, true)
  }

  function logout(): void {
    apply(null, true)
  }

  /** Restores the session saved by an earlier visit; returns whether one was found. */
  function rehydrate(): boolean {
    const p = readPersisted()
    apply(p, false)
    return !!p
  }

  return { token, team, role, tokenId, isAuthenticated, isAdmin, login, signInWithToken, logout, rehydrate }
})
