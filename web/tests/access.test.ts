// Environments, secrets and token scopes in the UI (issue 13), against a stubbed API.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { api } from '../src/api/client'
import type { Version } from '../src/api/types'
import TriggerRunForm from '../src/components/TriggerRunForm.vue'
import SecretsPage from '../src/pages/SecretsPage.vue'
import TokensPage from '../src/pages/TokensPage.vue'
import EnvironmentsPage from '../src/pages/EnvironmentsPage.vue'
import { allByTestId, byTestId, json, mount, routes, settle, waitFor } from './mount'

let unmount: (() => void) | null = null
beforeEach(() => {
  vi.unstubAllGlobals()
  localStorage.clear()
  api.setToken('t')
})
afterEach(() => {
  unmount?.()
  unmount = null
})

const envs = {
  environments: [
    { name: 'default', created_at: '2026-11-22T10:00:00Z', online_runners: 1, runner_names: ['r1'] },
    { name: 'prod', created_at: '2026-11-22T10:00:00Z', online_runners: 0, runner_names: [] },
  ],
}

const version: Version = {
  version_no: 1,
  artifact_sha256: 'ab'.repeat(32),
  entrypoint: 'main.py',
  timeout_seconds: 60,
  params_schema: null,
  created_at: '2026-11-22T10:00:00Z',
}

describe('Trigger form', () => {
  it('offers the team environments, flags those without a runner, and sends the choice', async () => {
    const bodies: unknown[] = []
    routes({
      'GET /api/v1/environments': () => json(200, envs),
      'POST /api/v1/apps/hello/runs': (init) => {
        bodies.push(JSON.parse(init.body as string))
        return json(201, { id: 3 })
      },
    })
    const m = await mount(TriggerRunForm, { slug: 'hello', versions: [version] })
    unmount = m.unmount
    const select = await waitFor(() => {
      const s = byTestId(m.el, 'trigger-environment') as HTMLSelectElement | null
      return s && s.options.length === 2 ? s : null
    }, 'environments loaded')
    expect([...select.options].map((o) => o.textContent!.trim())).toEqual(['default', 'prod (no runner online)'])
    select.value = 'prod'
    select.dispatchEvent(new Event('change'))
    await settle()
    ;(byTestId(m.el, 'trigger-form') as HTMLFormElement).dispatchEvent(new Event('submit', { cancelable: true }))
    await waitFor(() => bodies.length, 'create run request')
    expect(bodies[0]).toMatchObject({ environment: 'prod' })
  })
})

describe('Environments page', () => {
  it('lists each environment with its online runners', async () => {
    routes({ 'GET /api/v1/environments': () => json(200, envs) })
    const m = await mount(EnvironmentsPage)
    unmount = m.unmount
    await waitFor(() => allByTestId(m.el, 'environment-row').length === 2, 'rows')
    const cells = allByTestId(m.el, 'environment-runners').map((c) => c.textContent!.trim())
    expect(cells[0]).toBe('1: r1')
    expect(cells[1]).toContain('none online')
  })
})

describe('Secrets page', () => {
  it('takes the value in a password field, sends it once, forgets it and never shows it', async () => {
    const puts: { url: string; body: unknown }[] = []
    const listed = [{ name: 'DB_PASSWORD', environment: 'prod', version: 2, created_at: '2026-11-22T10:00:00Z', updated_at: '2026-11-22T10:00:00Z' }]
    routes({
      'GET /api/v1/environments': () => json(200, envs),
      'GET /api/v1/secrets': () => json(200, { environment: 'prod', secrets: listed }),
      'PUT /api/v1/secrets/DB_PASSWORD': (init, url) => {
        puts.push({ url, body: JSON.parse(init.body as string) })
        return json(200, { ...listed[0], version: 3 })
      },
    })
    const m = await mount(SecretsPage, {}, '/secrets?environment=prod')
    unmount = m.unmount
    await waitFor(() => allByTestId(m.el, 'secret-row').length === 1, 'secret row')
    expect(byTestId(m.el, 'secret-version')!.textContent).toBe('2')
    const value = byTestId(m.el, 'secret-value') as HTMLInputElement
    expect(value.type).toBe('password')
    const name = byTestId(m.el, 'secret-name') as HTMLInputElement
    name.value = 'DB_PASSWORD'
    name.dispatchEvent(new Event('input'))
    value.value = 'hunter2-secret'
    value.dispatchEvent(new Event('input'))
    await settle()
    ;(byTestId(m.el, 'secret-form') as HTMLFormElement).dispatchEvent(new Event('submit', { cancelable: true }))
    await waitFor(() => byTestId(m.el, 'secret-saved'), 'saved notice')
    expect(puts[0].url).toContain('environment=prod')
    expect(puts[0].body).toEqual({ value: 'hunter2-secret' })
    expect(value.value).toBe('')
    expect(m.el.innerHTML).not.toContain('hunter2-secret')
  })
})

describe('Tokens page', () => {
  it('shows scope, expiry, last use and last refusal', async () => {
    routes({
      'GET /api/v1/tokens': () =>
        json(200, {
          tokens: [
            {
              id: 4,
              name: 'ci',
              role: 'member',
              created_at: '2026-11-22T10:00:00Z',
              last_used_at: '2026-11-22T10:05:00Z',
              expires_at: '2026-12-22T10:00:00Z',
              scope: { app: 'etl', actions: ['read', 'trigger'] },
              last_refused_at: '2026-11-22T10:06:00Z',
              last_refusal: 'out of scope: POST /api/v1/runs/{run}/cancel needs the cancel action',
            },
          ],
        }),
    })
    const m = await mount(TokensPage)
    unmount = m.unmount
    await waitFor(() => allByTestId(m.el, 'token-row').length === 1, 'token row')
    expect(byTestId(m.el, 'token-scope')!.textContent).toBe('app etl: read, trigger')
    expect(byTestId(m.el, 'token-expires')!.textContent!.trim()).not.toBe('—')
    expect(byTestId(m.el, 'token-refused')!.textContent).toContain('needs the cancel action')
  })
})
