// Issue 14 in the components: ANSI colours and lifecycle events in the log viewer, named
// priorities, a version's job, per-run overrides in the trigger form, an attempt's commit.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { api } from '../src/api/client'
import type { Attempt, LogLine, Version } from '../src/api/types'
import AttemptsTimeline from '../src/components/AttemptsTimeline.vue'
import LogViewer from '../src/components/LogViewer.vue'
import RunsTable from '../src/components/RunsTable.vue'
import TriggerRunForm from '../src/components/TriggerRunForm.vue'
import VersionsTable from '../src/components/VersionsTable.vue'
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

const line = (seq: number, text: string, stream = 'stdout'): LogLine => ({
  seq,
  attempt_no: 1,
  stream,
  line: text,
  logged_at: '2026-11-22T10:00:00Z',
})

function type(input: HTMLInputElement, value: string) {
  input.value = value
  input.dispatchEvent(new Event('input'))
}

describe('Log viewer: colours and events', () => {
  const lines = [
    line(1, '{"event":"started","pid":1234,"runner":"runner-1","attempt":1,"limits":"cgroup v2"}', 'event'),
    line(2, '\x1b[31mred\x1b[0m and \x1b[1;32mbold green\x1b[0m'),
    line(3, '<script>window.pwned = 1</script>\x1b[33m<b>not bold</b>\x1b[0m'),
    line(4, 'progress 10%\r\x1b[Kprogress 100%'),
    line(5, '{"event":"finished","exit_code":null,"signal":"SIGKILL","duration_ms":1200,"reason":"memory limit 256 MiB exceeded"}', 'event'),
    line(6, '{"event": broken', 'event'),
    line(7, 'plain <i>text</i>'),
  ]

  it('renders colours as spans, escapes markup and resolves redraws', async () => {
    const m = await mount(LogViewer, { lines, state: 'ended' })
    unmount = m.unmount
    await settle()
    const rows = allByTestId(m.el, 'log-line')
    expect(rows.length).toBe(7)
    const red = rows[1].querySelector('.ansi-red-fg')!
    expect(red.textContent).toBe('red')
    expect(rows[1].querySelector('.ansi-green-fg')!.getAttribute('style')).toContain('font-weight:bold')
    expect(rows[1].textContent).not.toContain('\x1b')
    // untrusted text stays text
    expect(rows[2].querySelector('script')).toBeNull()
    expect(rows[2].querySelector('b')).toBeNull()
    expect(rows[2].querySelector('.tx')!.textContent).toBe('<script>window.pwned = 1</script><b>not bold</b>')
    expect((window as unknown as { pwned?: number }).pwned).toBeUndefined()
    expect(rows[3].querySelector('.tx')!.textContent).toBe('progress 100%')
    expect(rows[6].querySelector('i')).toBeNull()
    expect(rows[6].querySelector('.tx')!.textContent).toBe('plain <i>text</i>')
  })

  it('shows events as compact rows and a malformed one as its text', async () => {
    const m = await mount(LogViewer, { lines, state: 'ended' })
    unmount = m.unmount
    await settle()
    const events = allByTestId(m.el, 'log-event')
    expect(events.map((e) => [e.dataset.event, e.dataset.tone, e.textContent])).toEqual([
      ['started', 'info', '▶ started · pid 1234 · runner-1 · attempt 1 · limits: cgroup v2'],
      ['finished', 'bad', '■ finished · killed by SIGKILL · memory limit 256 MiB exceeded · 1.2 s'],
    ])
    const broken = m.el.querySelector('[data-seq="6"]')!
    expect(broken.querySelector('[data-testid="log-event"]')).toBeNull()
    expect(broken.querySelector('.tx')!.textContent).toBe('{"event": broken')
  })

  it('searches the visible text and highlights it in coloured lines and events', async () => {
    const m = await mount(LogViewer, { lines, state: 'ended' })
    unmount = m.unmount
    await settle()
    const search = byTestId(m.el, 'log-search') as HTMLInputElement
    type(search, 'RED AND BOLD')
    await settle()
    expect(byTestId(m.el, 'log-search-count')!.dataset.matches).toBe('1')
    const row = m.el.querySelector('[data-seq="2"]')!
    // one hit across a colour change: first piece carries the test id, colours kept
    expect(row.querySelectorAll('[data-testid="log-match"]').length).toBe(1)
    expect([...row.querySelectorAll('mark')].map((x) => x.textContent).join('')).toBe('red and bold')
    expect(row.querySelector('.ansi-red-fg mark')).not.toBeNull()
    // escape bytes and the JSON of events are not searched; the event summary is
    type(search, '[31m')
    await settle()
    expect(byTestId(m.el, 'log-search-count')!.dataset.matches).toBe('0')
    type(search, 'sigkill')
    await settle()
    expect(allByTestId(m.el, 'log-match').map((e) => e.textContent)).toEqual(['SIGKILL'])
    type(search, 'progress 10%') // overwritten on screen by "progress 100%"
    await settle()
    expect(byTestId(m.el, 'log-search-count')!.dataset.matches).toBe('0')
    type(search, 'progress 100%')
    await settle()
    expect(m.el.querySelector('.line.current')!.getAttribute('data-seq')).toBe('4')
  })
})

const run = fakeRun

describe('Runs table priority', () => {
  it('shows the name when there is one, else the number', async () => {
    const m = await mount(RunsTable, {
      runs: [
        run({ id: 1, priority: 100, priority_name: 'foreground' }),
        run({ id: 2, priority: 5, priority_name: null }),
        run({ id: 3, priority: -100 }), // a server without names
      ],
    })
    unmount = m.unmount
    await settle()
    expect(allByTestId(m.el, 'run-priority').map((c) => c.textContent!.trim())).toEqual(['foreground', '5', '-100'])
    expect(allByTestId(m.el, 'run-priority')[0].title).toBe('priority 100')
  })
})

const version = (n: number, over: Partial<Version> = {}): Version => ({
  version_no: n,
  artifact_sha256: 'ab'.repeat(32),
  entrypoint: 'main.py',
  timeout_seconds: 60,
  params_schema: null,
  created_at: '2026-11-22T10:00:00Z',
  ...over,
})

describe('Versions table', () => {
  it('shows what each version runs, its badges and default priority', async () => {
    const m = await mount(VersionsTable, {
      versions: [
        version(3, {
          job: {
            entry: { kind: 'command', argv: ['make', 'test'] },
            source: { kind: 'git', url: 'file:///srv/r.git', ref: 'v1' },
            pty: { cols: 80, rows: 24 },
            limits: { memory: 268435456, pids: 64 },
          },
          priority: -100,
          priority_name: 'best_effort',
        }),
        version(2, { job: { entry: { kind: 'shell', script: 'echo hi && make' }, source: { kind: 'archive' } }, priority: null }),
        version(1), // from a server without jobs
      ],
    })
    unmount = m.unmount
    await settle()
    expect(allByTestId(m.el, 'version-job').map((e) => e.textContent)).toEqual([
      'git file:///srv/r.git@v1 · command make test',
      'shell echo hi && make',
      'script main.py',
    ])
    const rows = allByTestId(m.el, 'version-row')
    expect([...rows[0].querySelectorAll('[data-testid="job-tag"]')].map((t) => t.textContent)).toEqual([
      'PTY',
      'memory 256 MiB',
      'pids 64',
    ])
    expect(rows[1].querySelectorAll('[data-testid="job-tag"]').length).toBe(0)
    expect(allByTestId(m.el, 'version-priority').map((e) => e.textContent!.trim())).toEqual(['best_effort', 'background', '—'])
  })
})

describe('Attempts timeline', () => {
  it('shows the commit a git attempt checked out, short with the full SHA on hover', async () => {
    const sha = '0123456789abcdef0123456789abcdef01234567'
    const attempt = (n: number, source_commit?: string | null): Attempt => ({
      attempt_no: n,
      status: 'completed',
      runner: 'r1',
      exit_code: 0,
      started_at: '2026-11-22T10:00:01Z',
      finished_at: '2026-11-22T10:00:02Z',
      source_commit,
    })
    const m = await mount(AttemptsTimeline, { attempts: [attempt(1, sha), attempt(2, null), attempt(3)] })
    unmount = m.unmount
    await settle()
    const commits = allByTestId(m.el, 'attempt-commit')
    expect(commits.length).toBe(1)
    expect(commits[0].dataset.commit).toBe(sha)
    expect(commits[0].querySelector('code')!.textContent).toBe('0123456789')
    expect(commits[0].querySelector('code')!.title).toBe(sha)
    expect(commits[0].querySelector('[data-testid="copy-button"]')).not.toBeNull()
  })
})

describe('Trigger form overrides', () => {
  function setup() {
    const bodies: Record<string, unknown>[] = []
    routes({
      'GET /api/v1/environments': () => json(200, { environments: [] }),
      'POST /api/v1/apps/hello/runs': (init) => {
        bodies.push(JSON.parse(init.body as string))
        return json(201, run({ id: 9 }))
      },
    })
    return bodies
  }
  const submit = (el: HTMLElement) =>
    (byTestId(el, 'trigger-form') as HTMLFormElement).dispatchEvent(new Event('submit', { cancelable: true }))
  const select = (el: HTMLElement, id: string, value: string) => {
    const s = byTestId(el, id) as HTMLSelectElement
    s.value = value
    s.dispatchEvent(new Event('change'))
  }
  const check = (el: HTMLElement, id: string, on: boolean) => {
    const c = byTestId(el, id) as HTMLInputElement
    c.checked = on
    c.dispatchEvent(new Event('change'))
  }

  it('sends nothing extra by default: the version decides', async () => {
    const bodies = setup()
    const m = await mount(TriggerRunForm, { slug: 'hello', versions: [version(1, { priority: 100, priority_name: 'foreground' })] })
    unmount = m.unmount
    await settle()
    const opts = [...(byTestId(m.el, 'trigger-priority') as HTMLSelectElement).options].map((o) => o.textContent!.trim())
    expect(opts).toEqual(['Version default (foreground)', 'foreground (100)', 'background (0)', 'best_effort (-100)', 'Custom number…'])
    submit(m.el)
    await waitFor(() => bodies.length, 'create run request')
    expect(Object.keys(bodies[0]).sort()).toEqual(['environment', 'input', 'max_retries', 'version_no'])
  })

  it('sends a named priority, a custom number, PTY and limits when set', async () => {
    const bodies = setup()
    const m = await mount(TriggerRunForm, { slug: 'hello', versions: [version(1)] })
    unmount = m.unmount
    await settle()
    select(m.el, 'trigger-priority', 'best_effort')
    check(m.el, 'trigger-pty', true)
    type(byTestId(m.el, 'trigger-limit-memory') as HTMLInputElement, '256MiB')
    type(byTestId(m.el, 'trigger-limit-cpus') as HTMLInputElement, '1.5')
    await settle()
    submit(m.el)
    await waitFor(() => bodies.length, 'create run request')
    expect(bodies[0]).toMatchObject({ priority: -100, pty: true, limits: { memory: '256MiB', cpus: 1.5 } })
    expect(bodies[0].limits).toEqual({ memory: '256MiB', cpus: 1.5 })
    expect(bodies[0].ref).toBeUndefined()

    select(m.el, 'trigger-priority', 'custom')
    await settle()
    type(byTestId(m.el, 'trigger-priority-custom') as HTMLInputElement, '42')
    await settle()
    submit(m.el)
    await waitFor(() => bodies.length === 2, 'second request')
    expect(bodies[1].priority).toBe(42)
  })

  it('refuses a malformed limit with a message, sending nothing', async () => {
    const bodies = setup()
    const m = await mount(TriggerRunForm, { slug: 'hello', versions: [version(1)] })
    unmount = m.unmount
    await settle()
    type(byTestId(m.el, 'trigger-limit-memory') as HTMLInputElement, 'a lot')
    await settle()
    submit(m.el)
    await settle()
    expect(bodies.length).toBe(0)
    expect(m.el.textContent).toContain('Memory must be a size like 256MiB')
  })

  it('a PTY version can run with pipes; a git version takes a ref', async () => {
    const bodies = setup()
    const git = version(2, {
      job: { entry: { kind: 'script', path: 'ci.py' }, source: { kind: 'git', url: '/srv/r', ref: 'main' }, pty: { cols: 80, rows: 24 } },
    })
    const m = await mount(TriggerRunForm, { slug: 'hello', versions: [git] })
    unmount = m.unmount
    await settle()
    expect((byTestId(m.el, 'trigger-pty') as HTMLInputElement).checked).toBe(true)
    expect(byTestId(m.el, 'trigger-job')!.textContent).toBe('git /srv/r@main · script ci.py')
    check(m.el, 'trigger-pty', false)
    type(byTestId(m.el, 'trigger-ref') as HTMLInputElement, 'v2')
    await settle()
    submit(m.el)
    await waitFor(() => bodies.length, 'create run request')
    expect(bodies[0]).toMatchObject({ pty: false, ref: 'v2' })
  })
})
