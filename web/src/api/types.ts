// Wire types of the v1 HTTP API; the source of truth is crates/core/src/api.rs (serde structs).

export type Role = 'admin' | 'member'

export interface Team {
  id: number
  slug: string
  name: string
}

export interface LoginResponse {
  team: Team
  token: string
}

export interface MeResponse {
  team: Team
  role: Role
  token_id: number
}

export type ScopeAction = 'read' | 'trigger' | 'cancel' | 'deploy'

/** A scope narrower than member: these actions, on one app when `app` is set. */
export interface TokenScope {
  app?: string
  actions: ScopeAction[]
}

export interface TokenInfo {
  id: number
  name: string
  role: Role
  created_at: string
  last_used_at: string | null
  expires_at?: string | null
  scope?: TokenScope
  last_refused_at?: string | null
  last_refusal?: string | null
}

export interface CreatedToken {
  id: number
  name: string
  role: Role
  token: string
  expires_at?: string | null
  scope?: TokenScope
}

export interface CreateTokenBody {
  name: string
  role?: Role
  expires_in?: string
  scope?: TokenScope
}

/** A team's environment with the online runners serving it. */
export interface Environment {
  name: string
  created_at: string
  online_runners: number
  runner_names: string[]
}

/** A secret as listed: never its value. */
export interface SecretInfo {
  name: string
  environment: string
  version: number
  created_at: string
  updated_at: string
}

export interface JsonSchema {
  type?: string | string[]
  title?: string
  description?: string
  properties?: Record<string, JsonSchema>
  required?: string[]
  default?: unknown
  enum?: unknown[]
  items?: JsonSchema
  [key: string]: unknown
}

/** Named priority tiers: foreground = 100, background = 0 (the default), best_effort = -100. */
export type PriorityName = 'foreground' | 'background' | 'best_effort'

/** What a version runs (issue 14); see crates/core job types. */
export type JobEntry =
  | { kind: 'script'; path: string }
  | { kind: 'command'; argv: string[] }
  | { kind: 'shell'; script: string }
  | { kind: 'binary'; args?: string[] }

/** Where the files come from: the uploaded archive, a git checkout or a downloaded binary. */
export type JobSource =
  | { kind: 'archive' }
  | { kind: 'git'; url: string; ref: string; secret?: string | null }
  | { kind: 'binary'; url: string; sha256: string }

export interface PtySize {
  cols: number
  rows: number
}

/** Resource limits as stored: memory and disk in bytes; each optional. */
export interface JobLimits {
  memory?: number | null
  cpus?: number | null
  pids?: number | null
  disk?: number | null
}

export interface JobSpec {
  entry: JobEntry
  source?: JobSource
  /** absent or null: pipes */
  pty?: PtySize | null
  limits?: JobLimits | null
}

export interface Version {
  version_no: number
  artifact_sha256: string
  entrypoint: string
  timeout_seconds: number
  params_schema: JsonSchema | null
  created_at: string
  import_paths?: string[]
  /** What the version runs; absent from servers before issue 14. */
  job?: JobSpec
  /** Default priority of its runs; null: background. */
  priority?: number | null
  priority_name?: PriorityName | null
}

export interface App {
  id: number
  slug: string
  description: string | null
  created_at: string
  /** number of the newest version; absent while the app has none */
  latest_version?: number | null
}

export const ACTIVE_STATUSES = ['queued', 'leased', 'running', 'cancelling'] as const
export const TERMINAL_STATUSES = ['completed', 'failed', 'cancelled', 'dead'] as const
export const RUN_STATUSES = [...ACTIVE_STATUSES, ...TERMINAL_STATUSES] as const
export type RunStatus = (typeof RUN_STATUSES)[number]

export function isActive(status: string | undefined | null): boolean {
  return !!status && (ACTIVE_STATUSES as readonly string[]).includes(status)
}

export interface Attempt {
  attempt_no: number
  status: string
  runner: string | null
  exit_code: number | null
  error_message?: string | null
  started_at: string | null
  finished_at: string | null
  /** The git commit a git-sourced attempt checked out; null otherwise. */
  source_commit?: string | null
}

/** What a run overrode of its version's job. */
export interface JobOverrides {
  pty?: PtySize | boolean | null
  limits?: JobLimits | null
  ref?: string | null
  /** A repository the run checked out instead of the version's source. */
  git_url?: string | null
}

export interface Run {
  id: number
  run_no: number
  app: string
  version_no: number
  status: RunStatus
  input: unknown
  priority: number
  /** The priority's name; null when the number has none; absent from older servers. */
  priority_name?: PriorityName | null
  job_overrides?: JobOverrides | null
  max_retries: number
  retry_count: number
  cancel_requested: boolean
  exit_code: number | null
  error_message: string | null
  queued_at: string
  started_at: string | null
  finished_at: string | null
  environment: string
  /** Failure retries the run may make; a failed attempt queues it again. */
  failure_retries?: number
  /** Failure retries made so far. */
  failure_retry_count?: number
  /** First failure-retry delay (ms). */
  retry_delay_ms?: number
  /** A queued run waiting for its failure retry is not leased before this. */
  not_before?: string | null
  /** The schedule that started the run; null when triggered by hand. */
  schedule_id?: number | null
  scheduled_for?: string | null
  attempts?: Attempt[]
  /** Run detail only: queued and no online runner serves its environment. */
  waiting_for_runner?: boolean
}

export interface Schedule {
  id: number
  app: string
  cron: string
  timezone: string
  input: Record<string, unknown>
  version_no: number | null
  environment: string
  enabled: boolean
  source: 'towerfile' | 'api'
  created_at: string
  updated_at: string
  last_tick_at: string
  /** The next five fire times (UTC); empty while paused. */
  next_runs: string[]
  /** The same instants with the schedule zone's offset. */
  next_runs_local: string[]
}

export interface CreateScheduleBody {
  cron: string
  timezone?: string
  input?: Record<string, unknown>
  enabled?: boolean
}

export type RunsSummary = Partial<Record<RunStatus, number>>

export interface StatsBucket {
  start: string
  completed: number
  failed: number
  cancelled: number
  dead: number
}

export interface RunStats {
  hours: number
  buckets: StatsBucket[]
  finished: number
  succeeded: number
  success_rate: number | null
  median_duration_seconds: number | null
}

export type LogStream = 'stdout' | 'stderr' | 'setup' | string

export interface LogLine {
  seq: number
  attempt_no: number
  stream: LogStream
  line: string
  logged_at: string
}

/** The JSON of a log line with stream "event" (written by the runner). */
export type LifecycleEvent =
  | { event: 'started'; pid?: number; runner?: string; attempt?: number; limits?: string }
  | {
      event: 'finished'
      exit_code?: number | null
      signal?: string | null
      duration_ms?: number
      peak_memory_bytes?: number | null
      reason?: string | null
    }
  | { event: string; [field: string]: unknown }

export interface Runner {
  id: number
  name: string
  environment: string
  status: 'online' | 'offline'
  last_seen_at: string | null
  active_runs: number
  max_concurrency?: number
}

/** Per-run limit overrides: sizes as "256MiB" or bytes. */
export interface CreateRunLimits {
  memory?: string | number
  cpus?: number
  pids?: number
  disk?: string | number
}

export interface CreateRunBody {
  input?: unknown
  version_no?: number
  /** an integer or a PriorityName */
  priority?: number | PriorityName
  max_retries?: number
  environment?: string
  /** true/false, or a window size */
  pty?: boolean | PtySize
  limits?: CreateRunLimits
  /** git versions only (or with git_url) */
  ref?: string
  /** a repository to check out for this run */
  git_url?: string
}

export type WebhookEvents = 'terminal' | 'failures' | 'all'

export interface Webhook {
  id: number
  url: string
  /** null: every app of the team */
  app: string | null
  events: WebhookEvents
  enabled: boolean
  created_at: string
  updated_at: string
}

/** Answer of creating a webhook: the signing secret, shown once. */
export interface CreatedWebhook extends Webhook {
  secret: string
}

export interface CreateWebhookBody {
  url: string
  app?: string
  events?: WebhookEvents
}

export interface WebhookDelivery {
  id: number
  event_id: string
  event_type: string
  run_id: number | null
  attempt_no: number
  status_code: number | null
  latency_ms: number
  response_excerpt: string | null
  error: string | null
  outcome: 'delivered' | 'retry' | 'failed'
  at: string
}
