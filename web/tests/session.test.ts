import { beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { api, ApiError } from '../src/api/client'
import { SESSION_KEY, useSessionStore } from '../src/stores/session'

const team = { id: 1, slug: 'acme', name: 'Acme' }

function respond(routes: Record<string, (init: RequestInit) => Response>) {
  const f = vi.fn(async (url: string, init: RequestInit) => {
    const key = `${init.method ?? 'GET'} ${url}`
    const h = routes[key]
    if (!h) throw new Error(`unexpected ${key}`)
    return h(init)
  })
  vi.stubGlobal('fetch', f)
  return f
}

const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status })
const auth = (init: RequestInit) => (init.headers as Record<string, string>).Authorization

beforeEach(() => {
  vi.unstubAllGlobals()
  localStorage.clear()
  setActivePinia(createPinia())
  api.setToken(null)
  api.onUnauthorized(null)
})

describe('session store', () => {
  it('logs in with slug + password and persists the session', async () => {
    const f = respond({
      'POST /api/v1/teams/login': () => json(200, { team, token: 'adm-1' }),
      'GET /api/v1/me': (init) =>
        auth(init) === 'Bearer adm-1'
          ? json(200, { team, role: 'admin', token_id: 7 })
          : json(401, { error: { code: 'unauthorized', message: 'no' } }),
    })
    const s = useSessionStore()
    await s.login(' acme ', 'pw-123456')
    expect(JSON.parse(f.mock.calls[0][1].body as string)).toEqual({ slug: 'acme', password: 'pw-123456' })
    expect(s.isAuthenticated).toBe(true)
    expect(s.isAdmin).toBe(true)
    expect(s.team).toEqual(team)
    expect(s.tokenId).toBe(7)
    expect(api.getToken()).toBe('adm-1')
    expect(JSON.parse(localStorage.getItem(SESSION_KEY)!)).toEqual({ token: 'adm-1', team, role: 'admin', tokenId: 7 })
  })

  it('keeps the login answer when /me fails for a reason other than 401', async () => {
    respond({
      'POST /api/v1/teams/login': () => json(200, { team, token: 'adm-1' }),
      'GET /api/v1/me': () => new Response('oops', { status: 500 }),
    })
    const s = useSessionStore()
    await s.login('acme', 'pw')
    expect(s.role).toBe('admin')
    expect(s.token).toBe('adm-1')
  })

  it('a wrong password leaves the store signed out', async () => {
    respond({ 'POST /api/v1/teams/login': () => json(401, { error: { code: 'unauthorized', message: 'invalid credentials' } }) })
    const s = useSessionStore()
    await expect(s.login('acme', 'nope')).rejects.toBeInstanceOf(ApiError)
    expect(s.isAuthenticated).toBe(false)
    expect(localStorage.getItem(SESSION_KEY)).toBeNull()
  })

  it('signs in with a pasted token after validating it with /me', async () => {
    const f = respond({ 'GET /api/v1/me': () => json(200, { team, role: 'member', token_id: 9 }) })
    const s = useSessionStore()
    await s.signInWithToken('  mem-9\n')
    expect(auth(f.mock.calls[0][1])).toBe('Bearer mem-9')
    expect(s.token).toBe('mem-9')
    expect(s.role).toBe('member')
    expect(s.isAdmin).toBe(false)
    expect(JSON.parse(localStorage.getItem(SESSION_KEY)!).role).toBe('member')
  })

  it('rejects an invalid pasted token without signing in or calling the 401 handler', async () => {
    respond({ 'GET /api/v1/me': () => json(401, { error: { code: 'unauthorized', message: 'unknown token' } }) })
    const handler = vi.fn()
    api.onUnauthorized(handler)
    const s = useSessionStore()
    await expect(s.signInWithToken('bogus')).rejects.toMatchObject({ status: 401 })
    expect(s.isAuthenticated).toBe(false)
    expect(handler).not.toHaveBeenCalled()
  })

  it('rejects an empty token without a request', async () => {
    const f = respond({})
    const s = useSessionStore()
    await expect(s.signInWithToken('   ')).rejects.toBeInstanceOf(ApiError)
    expect(f).not.toHaveBeenCalled()
  })

  it('logout clears state, storage and the client token', async () => {
    respond({ 'GET /api/v1/me': () => json(200, { team, role: 'admin', token_id: 1 }) })
    const s = useSessionStore()
    await s.signInWithToken('t')
    s.logout()
    expect(s.token).toBeNull()
    expect(s.team).toBeNull()
    expect(s.role).toBeNull()
    expect(api.getToken()).toBeNull()
    expect(localStorage.getItem(SESSION_KEY)).toBeNull()
  })

  it('rehydrates a saved session from localStorage', () => {
    localStorage.setItem(SESSION_KEY, JSON.stringify({ token: 'saved', team, role: 'member', tokenId: 4 }))
    const s = useSessionStore()
    expect(s.rehydrate()).toBe(true)
    expect(s.token).toBe('saved')
    expect(s.role).toBe('member')
    expect(s.tokenId).toBe(4)
    expect(api.getToken()).toBe('saved')
  })

  it('ignores a missing or corrupt saved session', () => {
    const s = useSessionStore()
    expect(s.rehydrate()).toBe(false)
    localStorage.setItem(SESSION_KEY, '{not json')
    expect(s.rehydrate()).toBe(false)
    localStorage.setItem(SESSION_KEY, JSON.stringify({ token: 'x', team, role: 'root' }))
    expect(s.rehydrate()).toBe(false)
    expect(s.isAuthenticated).toBe(false)
  })

  it('a 401 on a session call ends the session through the unauthorized handler', async () => {
    localStorage.setItem(SESSION_KEY, JSON.stringify({ token: 'revoked', team, role: 'admin', tokenId: 1 }))
    const s = useSessionStore()
    s.rehydrate()
    api.onUnauthorized(() => s.logout())
    respond({ 'GET /api/v1/apps': () => json(401, { error: { code: 'unauthorized', message: 'revoked' } }) })
    await expect(api.listApps()).rejects.toMatchObject({ status: 401 })
    expect(s.isAuthenticated).toBe(false)
    expect(localStorage.getItem(SESSION_KEY)).toBeNull()
  })
})
