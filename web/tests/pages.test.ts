// Components mounted against a stubbed API: what the issue-15 UI fixes render.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { api } from '../src/api/client'
import type { Version } from '../src/api/types'
import AppsPage from '../src/pages/AppsPage.vue'
import RunnersPage from '../src/pages/RunnersPage.vue'
import { useSessionStore } from '../src/stores/session'
import SignInPage from '../src/pages/SignInPage.vue'
import RunsTable from '../src/components/RunsTable.vue'
import TriggerRunForm from '../src/components/TriggerRunForm.vue'
import LogViewer from '../src/components/LogViewer.vue'
import type { LogLine } from '../src/api/types'
import { SIGNIN_MODE_KEY } from '../src/lib/signinMode'
import { allByTestId, byTestId, json, mount, routes, settle, waitFor, fakeRun } from './mount'

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

const run = fakeRun

const version = (n: number, schema: Version['params_schema'] = null): Version => ({
  version_no: n,
  artifact_sha256: 'ab'.repeat(32),
  entrypoint: `main${n}.py`,
  timeout_seconds: 60,
  params_schema: schema,
  created_at: '2026-11-22T10:00:00Z',
})

describe('Apps page', () => {
  it('shows the latest version number the API sends (a plain number), not "vundefined"', async () => {
    // GET /api/v1/apps as crates/core/src/api.rs serializes App: latest_version is an i64, absent without versions.
    routes({
      'GET /api/v1/apps': () =>
        json(200, {
          apps: [
            { id: 1, slug: 'hello', description: null, created_at: '2026-11-22T10:00:00Z', latest_version: 3 },
            { id: 2, slug: 'empty', description: 'none yet', created_at: '2026-11-22T10:00:00Z' },
          ],
        }),
    })
    const m = await mount(AppsPage)
    unmount = m.unmount
    await waitFor(() => allByTestId(m.el, 'app-row').length === 2, 'app rows')
    // the "Latest version" column
    const col = [...m.el.querySelectorAll('th')].findIndex((th) => /latest version/i.test(th.textContent!))
    const cells = allByTestId(m.el, 'app-row').map((row) => row.querySelectorAll('td')[col].textContent!.trim())
    expect(cells).toEqual(['v3', '—'])
    expect(m.el.textContent).not.toContain('undefined')
  })
})

describe('Sign-in page', () => {
  it('opens on the token tab by default (minitower dev prints a token)', async () => {
    const m = await mount(SignInPage, {}, '/signin')
    unmount = m.unmount
    await settle()
    expect(byTestId(m.el, 'signin-tabs')!.dataset.mode).toBe('token')
    expect(byTestId(m.el, 'signin-token')).not.toBeNull()
    expect(byTestId(m.el, 'signin-password')).toBeNull()
    expect(byTestId(m.el, 'tab-token')!.getAttribute('aria-selected')).toBe('true')
    expect(byTestId(m.el, 'signin-token-hint')!.textContent).toContain('minitower dev')
  })

  it('reopens on the tab that last signed in, and ?mode= overrides it', async () => {
    localStorage.setItem(SIGNIN_MODE_KEY, 'password')
    let m = await mount(SignInPage, {}, '/signin')
    await settle()
    expect(byTestId(m.el, 'signin-password')).not.toBeNull()
    m.unmount()
    m = await mount(SignInPage, {}, '/signin?mode=token')
    unmount = m.unmount
    await settle()
    expect(byTestId(m.el, 'signin-token')).not.toBeNull()
  })

  it('remembers the tab after a successful sign-in', async () => {
    routes({
      'POST /api/v1/teams/login': () => json(200, { team: { id: 1, slug: 'acme', name: 'Acme' }, token: 'adm' }),
      'GET /api/v1/me': () => json(200, { team: { id: 1, slug: 'acme', name: 'Acme' }, role: 'admin', token_id: 1 }),
    })
    const m = await mount(SignInPage, {}, '/signin')
    unmount = m.unmount
    await settle()
    byTestId(m.el, 'tab-password')!.click()
    await settle()
    const slug = byTestId(m.el, 'signin-slug') as HTMLInputElement
    const pw = byTestId(m.el, 'signin-password') as HTMLInputElement
    slug.value = 'acme'
    slug.dispatchEvent(new Event('input'))
    pw.value = 'pw-123456'
    pw.dispatchEvent(new Event('input'))
    ;(byTestId(m.el, 'signin-form') as HTMLFormElement).dispatchEvent(new Event('submit', { cancelable: true }))
    await waitFor(() => localStorage.getItem(SIGNIN_MODE_KEY), 'remembered mode')
    expect(localStorage.getItem(SIGNIN_MODE_KEY)).toBe('password')
  })
})

describe('Runs table', () => {
  it('has an exit code / error column', async () => {
    const m = await mount(RunsTable, {
      runs: [
        run({ id: 3, exit_code: 0 }),
        run({ id: 2, status: 'failed', exit_code: 1, error_message: 'process exited with code 1' }),
        run({ id: 1, status: 'dead', exit_code: null, error_message: 'lease expired' }),
        run({ id: 4, status: 'queued', exit_code: null, started_at: null, finished_at: null }),
      ],
    })
    unmount = m.unmount
    await settle()
    const cells = allByTestId(m.el, 'run-exit')
    expect(cells.map((c) => c.dataset.exitCode)).toEqual(['0', '1', '', ''])
    expect(cells[1].textContent).toContain('process exited with code 1')
    expect(cells[2].textContent).toContain('lease expired')
    expect(cells[3].textContent!.trim()).toBe('—')
    expect([...m.el.querySelectorAll('th')].map((t) => t.textContent!.trim())).toContain('Exit / error')
  })
})

describe('Trigger form', () => {
  it('can run any version, not only the latest', async () => {
    const bodies: unknown[] = []
    routes({
      'POST /api/v1/apps/hello/runs': (init) => {
        bodies.push(JSON.parse(init.body as string))
        return json(201, run({ id: 9 }))
      },
    })
    const schema2 = { type: 'object', properties: { who: { type: 'string', default: 'v2' } } }
    const m = await mount(TriggerRunForm, { slug: 'hello', versions: [version(2, schema2), version(1)] })
    unmount = m.unmount
    await settle()
    const select = byTestId(m.el, 'trigger-version') as HTMLSelectElement
    expect([...select.options].map((o) => o.textContent!.trim())).toEqual(['Latest (v2)', 'v2 (latest)', 'v1'])
    expect(byTestId(m.el, 'param-input-who')).not.toBeNull() // v2's schema

    select.value = '1'
    select.dispatchEvent(new Event('change'))
    await settle()
    expect(byTestId(m.el, 'param-input-who')).toBeNull() // v1 has no schema: raw JSON input
    expect(byTestId(m.el, 'trigger-version-info')!.textContent).toContain('v1 (main1.py), not the latest')
    ;(byTestId(m.el, 'trigger-form') as HTMLFormElement).dispatchEvent(new Event('submit', { cancelable: true }))
    await waitFor(() => bodies.length, 'create run request')
    expect(bodies[0]).toMatchObject({ version_no: 1, input: {} })
  })

  it('follows the latest version by default', async () => {
    const bodies: unknown[] = []
    routes({
      'POST /api/v1/apps/hello/runs': (init) => {
        bodies.push(JSON.parse(init.body as string))
        return json(201, run({ id: 9 }))
      },
    })
    const m = await mount(TriggerRunForm, { slug: 'hello', versions: [version(5), version(4)] })
    unmount = m.unmount
    await settle()
    ;(byTestId(m.el, 'trigger-form') as HTMLFormElement).dispatchEvent(new Event('submit', { cancelable: true }))
    await waitFor(() => bodies.length, 'create run request')
    expect(bodies[0]).toMatchObject({ version_no: 5 })
  })
})

describe('Log viewer', () => {
  const lines: LogLine[] = ['starting', 'error: disk full', 'retrying', 'Error again', 'done'].map((line, i) => ({
    seq: i + 1,
    attempt_no: 1,
    stream: line.toLowerCase().startsWith('error') ? 'stderr' : 'stdout',
    line,
    logged_at: '2026-11-22T10:00:00Z',
  }))

  function type(input: HTMLInputElement, value: string) {
    input.value = value
    input.dispatchEvent(new Event('input'))
  }

  it('searches, highlights, steps through and filters matches', async () => {
    const m = await mount(LogViewer, { lines, state: 'ended', filename: 'run-7-log.txt' })
    unmount = m.unmount
    await settle()
    type(byTestId(m.el, 'log-search') as HTMLInputElement, 'ERROR')
    await settle()
    const count = byTestId(m.el, 'log-search-count')!
    expect(count.dataset.matches).toBe('2')
    expect(count.textContent!.trim()).toBe('1 of 2')
    expect(allByTestId(m.el, 'log-match').map((e) => e.textContent)).toEqual(['error', 'Error'])
    expect(m.el.querySelector('.line.current')!.getAttribute('data-seq')).toBe('2')
    byTestId(m.el, 'log-search-next')!.click()
    await settle()
    expect(count.textContent!.trim()).toBe('2 of 2')
    expect(m.el.querySelector('.line.current')!.getAttribute('data-seq')).toBe('4')
    byTestId(m.el, 'log-search-next')!.click() // wraps around
    await settle()
    expect(count.textContent!.trim()).toBe('1 of 2')

    const only = byTestId(m.el, 'log-only-matches') as HTMLInputElement
    only.checked = true
    only.dispatchEvent(new Event('change'))
    await settle()
    expect(allByTestId(m.el, 'log-line').map((e) => e.dataset.seq)).toEqual(['2', '4'])

    type(byTestId(m.el, 'log-search') as HTMLInputElement, 'nothing like this')
    await settle()
    expect(byTestId(m.el, 'log-search-count')!.textContent!.trim()).toBe('no match')
  })

  it('toggles wrapping and remembers it', async () => {
    let m = await mount(LogViewer, { lines, state: 'ended' })
    await settle()
    expect(byTestId(m.el, 'log-viewer')!.dataset.wrap).toBe('true')
    const wrap = byTestId(m.el, 'log-wrap') as HTMLInputElement
    wrap.checked = false
    wrap.dispatchEvent(new Event('change'))
    await settle()
    expect(byTestId(m.el, 'log-viewer')!.dataset.wrap).toBe('false')
    expect(byTestId(m.el, 'log-viewer')!.classList.contains('nowrap')).toBe(true)
    m.unmount()
    m = await mount(LogViewer, { lines, state: 'ended' })
    unmount = m.unmount
    await settle()
    expect(byTestId(m.el, 'log-viewer')!.dataset.wrap).toBe('false')
  })

  it('downloads the whole log as text', async () => {
    const blobs: Blob[] = []
    const names: string[] = []
    vi.spyOn(URL, 'createObjectURL').mockImplementation((b) => {
      blobs.push(b as Blob)
      return 'blob:x'
    })
    vi.spyOn(URL, 'revokeObjectURL').mockImplementation(() => {})
    const click = vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(function (this: HTMLAnchorElement) {
      names.push(this.download)
    })
    const m = await mount(LogViewer, { lines, state: 'ended', filename: 'run-7-log.txt' })
    unmount = m.unmount
    await settle()
    byTestId(m.el, 'log-download')!.click()
    expect(names).toEqual(['run-7-log.txt'])
    expect(await blobs[0].text()).toBe('starting\n[stderr] error: disk full\nretrying\n[stderr] Error again\ndone\n')
    click.mockRestore()
    vi.restoreAllMocks()
  })
})

describe('Runners page', () => {
  it('renders each runner with the status the server reports', async () => {
    routes({
      'GET /api/v1/admin/runners': () =>
        json(200, {
          runners: [
            { id: 1, name: 'busy', environment: 'default', status: 'online', last_seen_at: '2026-11-22T10:00:00Z', active_runs: 1, max_concurrency: 4 },
            { id: 2, name: 'stopped', environment: 'default', status: 'offline', last_seen_at: '2026-11-22T09:00:00Z', active_runs: 0, max_concurrency: 1 },
          ],
        }),
    })
    const m = await mount(RunnersPage)
    unmount = m.unmount
    const session = useSessionStore()
    session.role = 'admin'
    session.token = 't'
    await waitFor(() => allByTestId(m.el, 'runner-row').length === 2, 'runner rows')
    const status = (name: string) =>
      m.el.querySelector<HTMLElement>(`[data-runner="${name}"] [data-testid="status-badge"]`)!.dataset.status
    expect(status('busy')).toBe('online')
    expect(status('stopped')).toBe('offline')
    expect(m.el.textContent).toContain('1 online of 2 registered')
    expect(m.el.querySelector('[data-runner="busy"] [data-testid="runner-active"]')!.textContent!.replace(/\s+/g, ' ').trim()).toBe('1 / 4')
  })
})
