import type {
  App,
  CreateRunBody,
  CreatedToken,
  CreateScheduleBody,
  CreateTokenBody,
  Environment,
  SecretInfo,
  LogLine,
  LoginResponse,
  MeResponse,
  Role,
  Run,
  Runner,
  RunsSummary,
  RunStats,
  Schedule,
  TokenInfo,
  Version,
  Webhook,
  CreatedWebhook,
  CreateWebhookBody,
  WebhookDelivery,
} from './types'

/** Every failed call surfaces as an ApiError. status 0 means the request never got an answer. */
export class ApiError extends Error {
  readonly status: number
  readonly code: string

  constructor(status: number, code: string, message: string) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
  }
}

export function isApiError(e: unknown): e is ApiError {
  return e instanceof ApiError
}

export interface RequestOptions {
  method?: string
  /** JSON body (serialized here). */
  json?: unknown
  /** Multipart body (the browser sets the boundary). */
  form?: FormData
  headers?: Record<string, string>
  /**
   * Use this token instead of the session's one (e.g. to validate a pasted token).
   * A 401 for such a request is reported to the caller only: it does not end the session.
   */
  token?: string
  signal?: AbortSignal
}

export interface ClientOptions {
  baseUrl?: string
  fetch?: typeof fetch
}

export interface RunsQuery {
  status?: string
  app?: string
  limit?: number
  offset?: number
}

const enc = encodeURIComponent

function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v))
  }
  const s = q.toString()
  return s ? `?${s}` : ''
}

/** Turns a non-2xx response into an ApiError, whatever its body looks like. */
export async function errorFromResponse(res: Response): Promise<ApiError> {
  let text = ''
  try {
    text = await res.text()
  } catch {
    /* body unreadable: fall through with empty text */
  }
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }
    const err = body?.error
    if (err && typeof err.code === 'string') {
      const message = typeof err.message === 'string' && err.message ? err.message : err.code
      return new ApiError(res.status, err.code, message)
    }
  } catch {
    /* not JSON */
  }
  const snippet = text.trim().slice(0, 200)
  const message = snippet || res.statusText || `HTTP ${res.status}`
  return new ApiError(res.status, `http_${res.status}`, message)
}

export class ApiClient {
  private token: string | null = null
  private unauthorizedHandler: (() => void) | null = null
  private reachabilityHandler: ((reachable: boolean, error: string) => void) | null = null
  private readonly baseUrl: string
  private readonly fetchImpl?: typeof fetch

  constructor(opts: ClientOptions = {}) {
    this.baseUrl = opts.baseUrl ?? ''
    this.fetchImpl = opts.fetch
  }

  setToken(token: string | null): void {
    this.token = token
  }

  getToken(): string | null {
    return this.token
  }

  /** Called after a 401 on a request made with the session token (the token is cleared first). */
  onUnauthorized(handler: (() => void) | null): void {
    this.unauthorizedHandler = handler
  }

  /**
   * Told after every request whether the server answered: false when the request got no
   * answer (network error) or a gateway in front answered 502/503/504; true otherwise.
   */
  onReachability(handler: ((reachable: boolean, error: string) => void) | null): void {
    this.reachabilityHandler = handler
  }

  /** Sends a request and returns the raw Response when it is 2xx; throws ApiError otherwise. */
  async raw(path: string, opts: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers }
    const usesSessionToken = opts.token === undefined && !!this.token
    const token = opts.token ?? this.token
    if (token) headers.Authorization = `Bearer ${token}`
    let body: BodyInit | undefined
    if (opts.form) {
      body = opts.form
    } else if (opts.json !== undefined) {
      headers['Content-Type'] = 'application/json'
      body = JSON.stringify(opts.json)
    }
    // Resolved per call so tests can stub globalThis.fetch.
    const doFetch = this.fetchImpl ?? globalThis.fetch
    let res: Response
    try {
      res = await doFetch(this.baseUrl + path, {
        method: opts.method ?? (body ? 'POST' : 'GET'),
        headers,
        body,
        signal: opts.signal,
      })
    } catch (e) {
      if (e instanceof DOMException && e.name === 'AbortError') throw e
      const msg = e instanceof Error ? e.message : String(e)
      this.reachabilityHandler?.(false, msg)
      throw new ApiError(0, 'network_error', `Network error: ${msg}`)
    }
    const gatewayDown = res.status === 502 || res.status === 503 || res.status === 504
    this.reachabilityHandler?.(!gatewayDown, gatewayDown ? `HTTP ${res.status}` : '')
    if (res.ok) return res
    const err = await errorFromResponse(res)
    if (res.status === 401 && usesSessionToken) {
      this.token = null
      this.unauthorizedHandler?.()
    }
    throw err
  }

  /** JSON request; resolves to undefined for 204. */
  async request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.raw(path, opts)
    if (res.status === 204) return undefined as T
    const text = await res.text()
    if (!text) return undefined as T
    try {
      return JSON.parse(text) as T
    } catch {
      throw new ApiError(res.status, 'invalid_response', `Unexpected non-JSON response: ${text.slice(0, 120)}`)
    }
  }

  /** Liveness probe (no token), used while the server is unreachable. */
  health(signal?: AbortSignal) {
    return this.raw('/health', { token: '', signal, headers: { Accept: '*/*' } })
  }

  // --- identity and tokens ---
  login(slug: string, password: string) {
    return this.request<LoginResponse>('/api/v1/teams/login', { json: { slug, password }, token: '' })
  }
  me(token?: string) {
    return this.request<MeResponse>('/api/v1/me', { token })
  }
  listTokens() {
    return this.request<{ tokens: TokenInfo[] }>('/api/v1/tokens').then((r) => r.tokens)
  }
  createToken(name: string, role: Role, extra: Omit<CreateTokenBody, 'name' | 'role'> = {}) {
    return this.request<CreatedToken>('/api/v1/tokens', { json: { name, role, ...extra } })
  }

  // --- environments and secrets ---
  listEnvironments() {
    return this.request<{ environments: Environment[] }>('/api/v1/environments').then((r) => r.environments)
  }
  createEnvironment(name: string) {
    return this.request<Environment>('/api/v1/environments', { json: { name } })
  }
  deleteEnvironment(name: string) {
    return this.request<void>(`/api/v1/environments/${enc(name)}`, { method: 'DELETE' })
  }
  listSecrets(environment: string) {
    return this.request<{ environment: string; secrets: SecretInfo[] }>(`/api/v1/secrets${query({ environment })}`).then(
      (r) => r.secrets,
    )
  }
  /** Write-only: the value goes out once and is never read back. */
  putSecret(name: string, environment: string, value: string) {
    return this.request<SecretInfo>(`/api/v1/secrets/${enc(name)}${query({ environment })}`, {
      method: 'PUT',
      json: { value },
    })
  }
  deleteSecret(name: string, environment: string) {
    return this.request<void>(`/api/v1/secrets/${enc(name)}${query({ environment })}`, { method: 'DELETE' })
  }
  revokeToken(id: number) {
    return this.request<void>(`/api/v1/tokens/${id}`, { method: 'DELETE' })
  }

  // --- webhooks ---
  listWebhooks() {
    return this.request<{ webhooks: Webhook[] }>('/api/v1/webhooks').then((r) => r.webhooks)
  }
  createWebhook(body: CreateWebhookBody) {
    return this.request<CreatedWebhook>('/api/v1/webhooks', { json: body })
  }
  setWebhookEnabled(id: number, enabled: boolean) {
    return this.request<Webhook>(`/api/v1/webhooks/${id}`, { method: 'PATCH', json: { enabled } })
  }
  deleteWebhook(id: number) {
    return this.request<void>(`/api/v1/webhooks/${id}`, { method: 'DELETE' })
  }
  webhookDeliveries(id: number, limit = 20) {
    return this.request<{ deliveries: WebhookDelivery[] }>(`/api/v1/webhooks/${id}/deliveries${query({ limit })}`).then(
      (r) => r.deliveries,
    )
  }
  testWebhook(id: number) {
    return this.request<{ event_id: string; event_type: string }>(`/api/v1/webhooks/${id}/test`, { method: 'POST' })
  }

  // --- schedules ---
  listSchedules(slug: string) {
    return this.request<{ schedules: Schedule[] }>(`/api/v1/apps/${enc(slug)}/schedules`).then((r) => r.schedules)
  }
  createSchedule(slug: string, body: CreateScheduleBody) {
    return this.request<Schedule>(`/api/v1/apps/${enc(slug)}/schedules`, { json: body })
  }
  setScheduleEnabled(id: number, enabled: boolean) {
    return this.request<Schedule>(`/api/v1/schedules/${id}`, { method: 'PATCH', json: { enabled } })
  }
  deleteSchedule(id: number) {
    return this.request<void>(`/api/v1/schedules/${id}`, { method: 'DELETE' })
  }

  // --- apps and versions ---
  listApps() {
    return this.request<{ apps: App[] }>('/api/v1/apps').then((r) => r.apps)
  }
  getApp(slug: string) {
    return this.request<App>(`/api/v1/apps/${enc(slug)}`)
  }
  createApp(slug: string, description?: string) {
    return this.request<App>('/api/v1/apps', { json: { slug, description: description || undefined } })
  }
  listVersions(slug: string) {
    return this.request<{ versions: Version[] }>(`/api/v1/apps/${enc(slug)}/versions`).then((r) => r.versions)
  }
  uploadVersion(slug: string, form: FormData) {
    return this.request<Version>(`/api/v1/apps/${enc(slug)}/versions`, { method: 'POST', form })
  }

  // --- runs ---
  listAppRuns(slug: string, limit = 50, offset = 0) {
    return this.request<{ runs: Run[] }>(`/api/v1/apps/${enc(slug)}/runs${query({ limit, offset })}`).then(
      (r) => r.runs,
    )
  }
  listRuns(q: RunsQuery = {}) {
    return this.request<{ runs: Run[] }>(`/api/v1/runs${query({ ...q })}`).then((r) => r.runs)
  }
  runsSummary() {
    return this.request<RunsSummary>('/api/v1/runs/summary')
  }
  runStats(hours = 24) {
    return this.request<RunStats>(`/api/v1/runs/stats${query({ hours })}`)
  }
  getRun(id: number | string) {
    return this.request<Run>(`/api/v1/runs/${enc(String(id))}`)
  }
  createRun(slug: string, body: CreateRunBody) {
    return this.request<Run>(`/api/v1/apps/${enc(slug)}/runs`, { json: body })
  }
  cancelRun(id: number | string) {
    return this.request<Run>(`/api/v1/runs/${enc(String(id))}/cancel`, { method: 'POST' })
  }
  getLogs(id: number | string, afterSeq = 0) {
    return this.request<{ logs: LogLine[] }>(`/api/v1/runs/${enc(String(id))}/logs${query({ after_seq: afterSeq })}`).then(
      (r) => r.logs,
    )
  }
  /** Opens the SSE log stream; the caller reads the body (see sse.ts). */
  openLogStream(id: number | string, afterSeq: number, signal?: AbortSignal) {
    return this.raw(`/api/v1/runs/${enc(String(id))}/logs/stream${query({ after_seq: afterSeq })}`, {
      headers: { Accept: 'text/event-stream' },
      signal,
    })
  }

  // --- admin ---
  listRunners() {
    return this.request<{ runners: Runner[] }>('/api/v1/admin/runners').then((r) => r.runners)
  }
}

/** The app-wide client; the session store keeps its token in sync. */
export const api = new ApiClient()
