// Test harness: starts minitowerd + a runner in a temp dir, makes artifacts, talks HTTP.
import { spawn, execFileSync } from 'node:child_process'
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'

const targetDir = process.env.CARGO_TARGET_DIR || '/root/.cache/minitower-target'
export const MINITOWERD_BIN = process.env.MINITOWERD_BIN || path.join(targetDir, 'debug', 'minitowerd')
export const RUNNER_BIN = process.env.MINITOWER_RUNNER_BIN || path.join(targetDir, 'debug', 'minitower-runner')

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** Polls fn until it returns a truthy value or the timeout passes. */
export async function until(fn, { timeout = 30_000, interval = 200, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout
  let last
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
    } catch (e) {
      last = e
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`)
    await new Promise((r) => setTimeout(r, interval))
  }
}

export class Stack {
  constructor() {
    this.dir = mkdtempSync(path.join(tmpdir(), 'mt-ui-e2e-'))
    this.procs = []
  }

  spawnLogged(name, bin, env) {
    if (!existsSync(bin)) throw new Error(`${name} binary not found at ${bin} (set MINITOWERD_BIN / MINITOWER_RUNNER_BIN)`)
    const logPath = path.join(this.dir, `${name}.log`)
    const log = createWriteStream(logPath)
    const p = spawn(bin, [], { cwd: this.dir, env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', ...env } })
    p.stdout.pipe(log)
    p.stderr.pipe(log)
    p.logPath = logPath
    p.label = name
    this.procs.push(p)
    return p
  }

  async start() {
    this.port = await freePort()
    this.base = `http://127.0.0.1:${this.port}`
    mkdirSync(path.join(this.dir, 'objects'), { recursive: true })
    await this.startServer()
    this.runner = this.spawnLogged('runner', RUNNER_BIN, {
      MINITOWER_SERVER_URL: this.base,
      MINITOWER_RUNNER_NAME: 'ui-runner',
      MINITOWER_RUNNER_REGISTRATION_TOKEN: 'reg',
      MINITOWER_DATA_DIR: path.join(this.dir, 'runner'),
    })
  }

  /** Starts minitowerd on this.port (again after stopServer: same database and port). */
  async startServer() {
    this.starts = (this.starts ?? 0) + 1
    this.server = this.spawnLogged(this.starts === 1 ? 'minitowerd' : `minitowerd-${this.starts}`, MINITOWERD_BIN, {
      MINITOWER_LISTEN_ADDR: `127.0.0.1:${this.port}`,
      MINITOWER_DB_PATH: path.join(this.dir, 'mt.db'),
      MINITOWER_OBJECTS_DIR: path.join(this.dir, 'objects'),
      MINITOWER_BOOTSTRAP_TOKEN: 'boot',
      MINITOWER_RUNNER_REGISTRATION_TOKEN: 'reg',
      MINITOWER_EXPIRY_CHECK_INTERVAL: '1s',
      // the webhook test's receiver listens on loopback; retries come fast
      MINITOWER_WEBHOOK_ALLOW_PRIVATE: 'true',
      MINITOWER_WEBHOOK_RETRY_BASE: '200ms',
    })
    const server = this.server
    await until(
      async () => {
        if (server.exitCode !== null) throw new Error(`minitowerd exited with ${server.exitCode}`)
        return (await fetch(`${this.base}/health`)).ok
      },
      { timeout: 60_000, what: 'minitowerd /health' },
    )
  }

  /** Stops minitowerd (SIGTERM, SIGKILL after 5 s) and waits until its port refuses connections. */
  async stopServer() {
    const p = this.server
    if (p.exitCode === null && p.signalCode === null) {
      await new Promise((resolve) => {
        const t = setTimeout(() => p.kill('SIGKILL'), 5000)
        p.once('exit', () => {
          clearTimeout(t)
          resolve()
        })
        p.kill('SIGTERM')
      })
    }
    await until(
      async () => {
        try {
          await fetch(`${this.base}/health`)
          return false
        } catch {
          return true
        }
      },
      { timeout: 10_000, what: 'minitowerd to stop answering' },
    )
  }

  /** SIGTERM, then SIGKILL whatever is still alive after 5 s. */
  async stop() {
    const alive = this.procs.filter((p) => p.exitCode === null && p.signalCode === null)
    for (const p of alive) p.kill('SIGTERM')
    await Promise.all(
      alive.map(
        (p) =>
          new Promise((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve()
            const t = setTimeout(() => {
              p.kill('SIGKILL')
              resolve()
            }, 5000)
            p.once('exit', () => {
              clearTimeout(t)
              resolve()
            })
          }),
      ),
    )
  }

  /** Kill synchronously (process exit handler). */
  killNow() {
    for (const p of this.procs) if (p.exitCode === null) p.kill('SIGKILL')
  }

  tail(n = 40) {
    return this.procs
      .map((p) => {
        let text = ''
        try {
          text = readFileSync(p.logPath, 'utf8').split('\n').slice(-n).join('\n')
        } catch {
          /* no log */
        }
        return `----- ${p.label} (${p.logPath}) -----\n${text}`
      })
      .join('\n')
  }

  async api(method, p, { token, json, form, expect } = {}) {
    const headers = {}
    if (token) headers.Authorization = `Bearer ${token}`
    let body
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json'
      body = JSON.stringify(json)
    } else if (form) body = form
    const res = await fetch(this.base + p, { method, headers, body })
    const text = await res.text()
    if (expect && res.status !== expect) throw new Error(`${method} ${p} → ${res.status} (wanted ${expect}): ${text}`)
    return text ? JSON.parse(text) : undefined
  }

  /** Writes files into a fresh dir and packs it with the system tar. */
  makeArtifact(name, files) {
    const src = path.join(this.dir, 'src', name)
    mkdirSync(src, { recursive: true })
    for (const [f, content] of Object.entries(files)) writeFileSync(path.join(src, f), content)
    const out = path.join(this.dir, `${name}.tar.gz`)
    execFileSync('tar', ['-czf', out, '-C', src, '.'])
    return out
  }

  async uploadVersion(token, app, artifactPath, fields = {}) {
    const form = new FormData()
    form.append('artifact', new Blob([readFileSync(artifactPath)], { type: 'application/gzip' }), path.basename(artifactPath))
    for (const [k, v] of Object.entries(fields)) form.append(k, String(v))
    return this.api('POST', `/api/v1/apps/${app}/versions`, { token, form, expect: 201 })
  }
}

export const HELLO_MAIN = `import json
import os

inp = json.loads(os.environ.get("MINITOWER_INPUT") or "{}")
for _ in range(int(inp.get("times", 1))):
    print(f"Hello, {inp.get('name', 'World')}!", flush=True)
`

export const COUNTDOWN_MAIN = `import sys
import time

for i in range(60, 0, -1):
    print(f"T-minus {i}", flush=True)
    if i % 10 == 0:
        print(f"{i} seconds left", file=sys.stderr, flush=True)
    time.sleep(1)
print("Liftoff!", flush=True)
`

export const HELLO_SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', default: 'World', description: 'Who to greet' },
    times: { type: 'integer', minimum: 1, maximum: 5, default: 1 },
  },
  required: ['name'],
}
