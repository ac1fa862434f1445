#!/usr/bin/env bash
# Runs schemathesis (--checks all) against a debug minitowerd on SQLite and
# then on PostgreSQL ($MINITOWER_TEST_POSTGRES_URL's server, a fresh
# database), bounded in time; fails on any failure. Needs the debug
# minitowerd built and `schemathesis` on PATH (or $SCHEMATHESIS).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${MINITOWERD_BIN:-${CARGO_TARGET_DIR:-target}/debug/minitowerd}"
ST="${SCHEMATHESIS:-schemathesis}"
PG_URL="${MINITOWER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
BIN="$(realpath "$BIN")"
# schemathesis keeps its cache in the working directory: not in the repo.
cd "$WORK"

# {app} is an app's slug, not its id: no guessing of links by field names.
cat > "$WORK/schemathesis.toml" <<'TOML'
[phases.stateful.inference]
algorithms = []

# A body past the call's size limit (a huge secret value, say) is refused
# with 413 before it is parsed: a rejection like 400, documented on every
# operation with a body.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

# A schema-valid webhook URL may still be refused with 400: its host does
# not resolve here, or resolves to a loopback or link-local address.
[[operations]]
include-path = "/api/v1/webhooks"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]

# Secrets live in an environment the team must have created: a schema-valid
# `?environment=` naming none is refused with 400 naming `environment`, and a
# value may not hold NUL (it becomes an environment variable); neither is
# expressible in the schema.
[[operations]]
include-path-regex = "^/api/v1/secrets"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]

# A run's job overrides are checked against its version: `ref` on a version
# without a git source, a size string that is not a size or is below the
# minimum (`limits.memory` "1KiB"), or a priority name that is none of the
# three are refused with 400 naming the field; the schema cannot say so.
[[operations]]
include-path-regex = "^/api/v1/apps/[^/]+/runs$"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
TOML

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# run_against NAME DATABASE_URL
run_against() {
  local name="$1" db="$2" port dir token rc=0
  port="$(free_port)"
  dir="$WORK/$name"
  mkdir -p "$dir"
  (cd "$dir" && MINITOWER_DATABASE_URL="$db" MINITOWER_BOOTSTRAP_TOKEN=boot \
    MINITOWER_RUNNER_REGISTRATION_TOKEN=reg MINITOWER_LISTEN_ADDR="127.0.0.1:$port" \
    exec "$BIN" >"$dir/server.log" 2>&1) &
  SERVER_PID=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
  done
  token="$(curl -sSf -X POST "http://127.0.0.1:$port/api/v1/bootstrap/team" \
    -H 'Authorization: Bearer boot' -H 'Content-Type: application/json' \
    -d '{"slug":"acme","name":"Acme","password":"schemathesis"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
  # One worker: CPython 3.11 before 3.11.8 keeps the AST constructor's
  # recursion depth in a global, so Hypothesis parsing lambdas in two threads
  # at once fails with "AST constructor recursion depth mismatch"
  # (CPython gh-106905), an error of the tool, not of the server.
  local common=(--checks all -H "Authorization: Bearer $token" --max-examples 30
    --workers 1 --max-failures 20 --warnings off)
  # SCHEMATHESIS_SEED replays a run (the seed its summary printed).
  if [ -n "${SCHEMATHESIS_SEED:-}" ]; then common+=(--seed "$SCHEMATHESIS_SEED"); fi
  echo "-- schemathesis on $name (port $port)"
  # DELETE /api/v1/tokens/{id} would revoke the token the run uses: it goes last.
  timeout 240 "$ST" --config-file "$WORK/schemathesis.toml" run \
    "http://127.0.0.1:$port/api/v1/openapi.json" "${common[@]}" --exclude-method DELETE || rc=$?
  if [ "$rc" -eq 0 ]; then
    timeout 120 "$ST" --config-file "$WORK/schemathesis.toml" run \
      "http://127.0.0.1:$port/api/v1/openapi.json" "${common[@]}" --include-method DELETE || rc=$?
  fi
  if grep -q 'status=5[0-9][0-9]' "$dir/server.log"; then
    echo "server answered 5xx on $name:"; grep 'status=5[0-9][0-9]' "$dir/server.log" | head -20
    rc=1
  fi
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  if [ "$rc" -ne 0 ]; then
    echo "schemathesis failed on $name (exit $rc)"; tail -50 "$dir/server.log"
    return "$rc"
  fi
}

run_against sqlite ""
db="mt_schemathesis_$$"
base="${PG_URL%/*}"
psql "$PG_URL" -q -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
rc=0
run_against postgres "$base/$db" || rc=$?
psql "$PG_URL" -q -c "DROP DATABASE IF EXISTS $db" || true
exit "$rc"
