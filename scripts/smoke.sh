#!/usr/bin/env bash
# End-to-end smoke test: build the binaries, start minitowerd and a runner on
# a free port in a temporary folder, bootstrap a team with curl, then deploy
# and run examples/hello with the CLI. Exits non-zero on any failure.
#
#   scripts/smoke.sh            # debug build
#   SMOKE_RELEASE=1 scripts/smoke.sh
# CARGO_TARGET_DIR is respected.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

profile=debug
build_flags=()
if [[ "${SMOKE_RELEASE:-}" == 1 ]]; then
    profile=release
    build_flags=(--release)
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/$profile"

say() { printf '== %s\n' "$*" >&2; }
fail() { printf 'smoke: FAILED: %s\n' "$*" >&2; exit 1; }

say "building"
cargo build "${build_flags[@]}" -p minitower-server -p minitower-runner -p minitower-cli

TMP="$(mktemp -d "${TMPDIR:-/tmp}/minitower-smoke.XXXXXX")"
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ $rc -ne 0 ]]; then
        for log in "$TMP"/*.log; do
            [[ -f "$log" ]] || continue
            printf -- '--- %s (last 40 lines)\n' "$(basename "$log")" >&2
            tail -n 40 "$log" >&2 || true
        done
    fi
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT INT TERM

# Nothing from the caller's environment may point the CLI elsewhere.
unset MINITOWER_TOKEN MINITOWER_PROFILE MINITOWER_SERVER_URL
export MINITOWER_CONFIG="$TMP/config.toml"

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
BOOT=smoke-bootstrap
REG=smoke-registration

say "starting minitowerd on $URL"
MINITOWER_LISTEN_ADDR="127.0.0.1:$PORT" \
MINITOWER_DB_PATH="$TMP/minitower.db" \
MINITOWER_OBJECTS_DIR="$TMP/objects" \
MINITOWER_BOOTSTRAP_TOKEN="$BOOT" \
MINITOWER_RUNNER_REGISTRATION_TOKEN="$REG" \
MINITOWER_LEASE_TTL=30s \
MINITOWER_EXPIRY_CHECK_INTERVAL=2s \
    "$BIN/minitowerd" >"$TMP/server.log" 2>&1 &
PIDS+=($!)

for _ in $(seq 1 100); do
    curl -fsS "$URL/health" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "$URL/health" >/dev/null || fail "minitowerd did not become healthy"

say "starting minitower-runner"
MINITOWER_SERVER_URL="$URL" \
MINITOWER_RUNNER_NAME=smoke-runner \
MINITOWER_RUNNER_REGISTRATION_TOKEN="$REG" \
MINITOWER_DATA_DIR="$TMP/runner" \
MINITOWER_POLL_INTERVAL=1s \
    "$BIN/minitower-runner" >"$TMP/runner.log" 2>&1 &
PIDS+=($!)

say "bootstrapping team smoke"
resp="$(curl -fsS -X POST "$URL/api/v1/bootstrap/team" \
    -H "Authorization: Bearer $BOOT" \
    -H "Content-Type: application/json" \
    -d '{"slug":"smoke","name":"Smoke Test"}')" || fail "bootstrap request failed"
TOKEN="$(printf '%s' "$resp" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')" \
    || fail "no token in bootstrap answer: $resp"

CLI="$BIN/minitower"
say "logging in"
"$CLI" login --server "$URL" --token "$TOKEN"

say "deploying examples/hello"
"$CLI" deploy examples/hello

say "running hello -p name=Smoke"
set +e
out="$("$CLI" run hello -p name=Smoke 2>"$TMP/run-stderr.log")"
rc=$?
set -e
printf '%s\n' "$out"
[[ $rc -eq 0 ]] || fail "minitower run exited $rc"
grep -q "Hello, Smoke!" <<<"$out" || fail "output lacks 'Hello, Smoke!'"

"$CLI" runs hello --limit 5

say "smoke: OK"
