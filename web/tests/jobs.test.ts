import { describe, expect, it } from 'vitest'
import type { JobLimits, Version } from '../src/api/types'
import { buildOverrides, jobSummary, overrideBadges, priorityLabel, rerunBody, shellJoin } from '../src/lib/jobs'
import { FieldError } from '../src/lib/schema'

describe('priorityLabel', () => {
  it('shows the name when the server sends one, else the number', () => {
    expect(priorityLabel({ priority: 100, priority_name: 'foreground' })).toBe('foreground')
    expect(priorityLabel({ priority: -100, priority_name: 'best_effort' })).toBe('best_effort')
    expect(priorityLabel({ priority: 7, priority_name: null })).toBe('7')
    expect(priorityLabel({ priority: 0 })).toBe('0') // a server without names
    expect(priorityLabel({ priority: null, priority_name: null }, 'background')).toBe('background') // no default set
    expect(priorityLabel({})).toBe('—')
  })
})

const v = (job: Version['job'], entrypoint = 'main.py'): Pick<Version, 'entrypoint' | 'job'> => ({ entrypoint, job })

describe('jobSummary', () => {
  it('says what each kind of version runs', () => {
    expect(jobSummary(v(undefined)).text).toBe('script main.py') // an older server: no job
    expect(jobSummary(v({ entry: { kind: 'script', path: 'app/run.py' }, source: { kind: 'archive' } })).text).toBe(
      'script app/run.py',
    )
    expect(jobSummary(v({ entry: { kind: 'command', argv: ['make', 'test'] }, source: { kind: 'archive' } })).text).toBe(
      'command make test',
    )
    expect(jobSummary(v({ entry: { kind: 'command', argv: ['echo', 'a b', "it's"] } })).text).toBe(
      `command echo 'a b' 'it'\\''s'`,
    )
    const git = jobSummary(
      v({ entry: { kind: 'command', argv: ['make'] }, source: { kind: 'git', url: 'file:///srv/repo.git', ref: 'v1.0' } }),
    )
    expect(git.text).toBe('git file:///srv/repo.git@v1.0 · command make')
    const sha = 'ab12'.repeat(16)
    const bin = jobSummary(
      v({ entry: { kind: 'binary', args: ['--flag'] }, source: { kind: 'binary', url: 'https://h/tool', sha256: sha } }),
    )
    expect(bin.text).toBe('binary https://h/tool (sha256 ab12ab12ab12…) --flag')
    expect(bin.full).toBe(`binary https://h/tool (sha256 ${sha}) --flag`)
  })

  it('truncates a long shell script, keeping it whole for the tooltip', () => {
    const script = 'echo start && ' + 'make all && '.repeat(10) + 'echo done'
    const s = jobSummary(v({ entry: { kind: 'shell', script } }))
    expect(s.text.startsWith('shell echo start && make all')).toBe(true)
    expect(s.text.endsWith('…')).toBe(true)
    expect(s.text.length).toBeLessThanOrEqual('shell '.length + 48)
    expect(s.full).toBe(`shell ${script}`)
    expect(jobSummary(v({ entry: { kind: 'shell', script: 'a\nb' } })).text).toBe('shell a; b')
  })

  it('adds PTY and limit badges', () => {
    const s = jobSummary(
      v({
        entry: { kind: 'script', path: 'main.py' },
        pty: { cols: 80, rows: 24 },
        limits: { memory: 268435456, cpus: 1.5, pids: 256, disk: 1073741824 },
      }),
    )
    expect(s.badges).toEqual(['PTY', 'memory 256 MiB', 'cpus 1.5', 'pids 256', 'disk 1 GiB'])
    expect(jobSummary(v({ entry: { kind: 'script', path: 'm.py' }, pty: { cols: 120, rows: 40 } })).badges).toEqual([
      'PTY 120×40',
    ])
    expect(jobSummary(v({ entry: { kind: 'script', path: 'm.py' }, pty: null, limits: { memory: null } })).badges).toEqual([])
  })

  it('falls back to the entrypoint for a job shape it does not know', () => {
    expect(jobSummary(v({ entry: { kind: 'wasm' } } as unknown as Version['job'], 'x.py')).text).toBe('script x.py')
  })

  it('quotes empty and special words', () => {
    expect(shellJoin(['a', '', '$HOME', 'x=1'])).toBe(`a '' '$HOME' x=1`)
  })
})

describe('run overrides', () => {
  it('shows what a run overrode', () => {
    expect(overrideBadges({ pty: { cols: 80, rows: 24 }, limits: { memory: 1048576 }, ref: 'main' })).toEqual([
      'PTY',
      'memory 1 MiB',
      'ref main',
    ])
    expect(overrideBadges({ pty: false })).toEqual(['pipes'])
    // sizes echoed as written
    expect(overrideBadges({ limits: { memory: '1GiB', disk: '' } as unknown as JobLimits })).toEqual(['memory 1GiB'])
    expect(overrideBadges(null)).toEqual([])
  })

  const none = { pty: false, versionPty: false, memory: '', cpus: '', pids: '', disk: '', ref: '' }

  it('sends only what is set', () => {
    expect(buildOverrides(none)).toEqual({})
    expect(buildOverrides({ ...none, pty: true })).toEqual({ pty: true })
    expect(buildOverrides({ ...none, pty: true, versionPty: true })).toEqual({}) // same as the version
    expect(buildOverrides({ ...none, versionPty: true })).toEqual({ pty: false }) // turned off for this run
    expect(buildOverrides({ ...none, memory: ' 256 MiB ', cpus: 1.5, pids: '64', disk: '1073741824', ref: ' v2 ' })).toEqual({
      limits: { memory: '256MiB', cpus: 1.5, pids: 64, disk: 1073741824 },
      ref: 'v2',
    })
  })

  it('refuses malformed limits naming the field', () => {
    const err = (over: Partial<typeof none>) => {
      try {
        buildOverrides({ ...none, ...over })
      } catch (e) {
        return e instanceof FieldError ? e.field : 'other'
      }
      return null
    }
    expect(err({ memory: 'lots' })).toBe('memory')
    expect(err({ disk: '-1GiB' })).toBe('disk')
    expect(err({ cpus: '0' })).toBe('cpus')
    expect(err({ pids: '2.5' })).toBe('pids')
    expect(err({ pids: '0' })).toBe('pids')
  })
})

describe('rerunBody', () => {
  it('runs a run again with its input, version, environment, priority and overrides', () => {
    const body = rerunBody({
      input: { name: 'Ada' },
      version_no: 3,
      environment: 'prod',
      priority: -100,
      job_overrides: { pty: { cols: 100, rows: 30 }, limits: { memory: 67108864, cpus: null }, ref: 'v2', git_url: '/srv/fork.git' },
    })
    expect(body).toEqual({
      input: { name: 'Ada' },
      version_no: 3,
      environment: 'prod',
      priority: -100,
      pty: { cols: 100, rows: 30 },
      limits: { memory: 67108864 },
      ref: 'v2',
      git_url: '/srv/fork.git',
    })
  })
  it('sends no override the run did not have', () => {
    const body = rerunBody({ input: {}, version_no: 1, environment: 'default', priority: 0 })
    expect(body).toEqual({ input: {}, version_no: 1, environment: 'default', priority: 0 })
    expect(rerunBody({ input: {}, version_no: 1, environment: 'default', priority: 0, job_overrides: { pty: false } }).pty).toBe(false)
  })
})
