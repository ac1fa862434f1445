#!/usr/bin/env bash
# Follows README.md as a user would, and fails if any documented command fails:
#
#   1. "The two commands": `minitower dev` in the background, then
#      `minitower run hello -p name=World` must print `Hello, World!`.
#   2. "CLI tour": the ```bash block under "## CLI tour" is extracted from
#      README.md (so an edit there is tested as written) and every line runs in
#      order, each one's exit status checked.
#
# The README's `cargo run --release --bin minitower --` is replaced by the
# debug `minitower` binary: the same code, without a 10-minute release build
# in CI. Binaries come from ${CARGO_TARGET_DIR:-target}/debug (built first;
# a no-op when up to date).
#
# What the tour assumes is set up first, the README's own way: team `acme` is
# bootstrapped with curl as in "Quickstart with curl" step 2 (same body and
# password), using the bootstrap token `minitower dev` keeps in
# .minitower/dev-secrets.toml, and the `countdown` example is deployed to it
# (the tour runs it but only deploys hello). Placeholder ids in the tour (run
# `12`, token `3`) are replaced by the ids the earlier commands printed.
#
# Everything runs in a temporary folder (so `.minitower`, `my-app` and the CLI
# config land there). `dev` listens on 127.0.0.1:8080 as documented; when that
# port is taken it gets `--listen 127.0.0.1:PORT` on a free port instead and
# the tour's `http://localhost:8080` is rewritten to match.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
MT="$BIN/minitower"

say() { printf '== %s\n' "$*" >&2; }
fail() { printf 'readme-tour: FAILED: %s\n' "$*" >&2; exit 1; }

say "building (no-op when up to date)"
(cd "$ROOT" && cargo build -q -p minitower-server -p minitower-runner -p minitower-cli)

TMP="$(mktemp -d "${TMPDIR:-/tmp}/minitower-readme-tour.XXXXXX")"
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
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

unset MINITOWER_TOKEN MINITOWER_PROFILE MINITOWER_SERVER_URL MINITOWER_PASSWORD
export MINITOWER_CONFIG="$TMP/config.toml"
# The tour deploys `examples/hello` relative to the checkout's root.
cp -r "$ROOT/examples" "$TMP/examples"
cd "$TMP"

# --- The two commands -------------------------------------------------------
PORT=8080
dev_args=(dev)
if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then
    PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    say "port 8080 is taken: starting dev with --listen 127.0.0.1:$PORT and rewriting the tour's URL"
    dev_args+=(--listen "127.0.0.1:$PORT")
fi
URL="http://127.0.0.1:$PORT"

say "minitower ${dev_args[*]}"
"$MT" "${dev_args[@]}" >"$TMP/dev.log" 2>&1 &
DEV_PID=$!
PIDS+=("$DEV_PID")

# Ready once the server answers and the banner (printed after the examples are
# deployed and the profile saved) is out.
deadline=$((SECONDS + 120))
until curl -fsS "$URL/ready" >/dev/null 2>&1 && grep -q "MiniTower is running at" "$TMP/dev.log"; do
    kill -0 "$DEV_PID" 2>/dev/null || fail "minitower dev exited early"
    ((SECONDS < deadline)) || fail "minitower dev was not ready within 120s"
    sleep 0.2
done

say "minitower run hello -p name=World"
out="$(timeout 120 "$MT" run hello -p name=World)" || fail "run hello exited $?"
printf '%s\n' "$out"
grep -qx "Hello, World!" <<<"$out" || fail "run hello did not print 'Hello, World!'"

# --- What the tour assumes: team acme (curl quickstart step 2), countdown ---
BOOT="$(sed -n 's/^bootstrap_token = "\(.*\)"$/\1/p' .minitower/dev-secrets.toml)"
[[ -n "$BOOT" ]] || fail "no bootstrap_token in .minitower/dev-secrets.toml"
say "bootstrapping team acme (README curl quickstart, step 2)"
resp="$(curl -fsS -X POST "$URL/api/v1/bootstrap/team" \
    -H "Authorization: Bearer $BOOT" \
    -H "Content-Type: application/json" \
    -d '{"slug":"acme","name":"Acme Corp","password":"change-me-please"}')" || fail "bootstrap of team acme"
TEAM_TOKEN="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$resp")"
say "deploying examples/countdown to acme (the tour runs it)"
MINITOWER_SERVER_URL="$URL" MINITOWER_TOKEN="$TEAM_TOKEN" timeout 60 "$MT" deploy examples/countdown >/dev/null \
    || fail "deploying countdown to acme"

# --- CLI tour -----------------------------------------------------------------
mapfile -t TOUR < <(awk '
    /^## CLI tour/ { sect = 1; next }
    sect && /^```bash/ { inblock = 1; next }
    inblock && /^```/ { exit }
    inblock { print }
' "$ROOT/README.md" | sed -e 's/[[:space:]]\+#.*$//' -e '/^[[:space:]]*$/d')
((${#TOUR[@]} >= 10)) || fail "could not extract the CLI tour from README.md (${#TOUR[@]} lines)"

RUN_ID=""
TOKEN_ID=""
SCHEDULE_ID=""
FOLLOW_PID=""
for line in "${TOUR[@]}"; do
    read -ra w <<<"$line"
    [[ "${w[0]}" == minitower ]] || fail "tour line does not start with minitower: $line"
    w=("${w[@]:1}")
    stdin=/dev/null
    stdout="$TMP/cmd.out"
    case "${w[0]}" in
        login)
            w=("${w[@]/http:\/\/localhost:8080/http://localhost:$PORT}")
            printf 'change-me-please\n' >"$TMP/password"
            stdin="$TMP/password" ;;
        logs | show | cancel)
            [[ -n "$RUN_ID" ]] || fail "no run id for: $line"
            w[1]="$RUN_ID" ;;
        tokens)
            if [[ "${w[1]}" == revoke ]]; then
                [[ -n "$TOKEN_ID" ]] || fail "no token id for: $line"
                w[2]="$TOKEN_ID"
            fi ;;
        schedules)
            # Placeholder schedule ids become the one `schedules create` printed.
            if [[ "${w[1]}" =~ ^(pause|resume|delete)$ ]]; then
                [[ -n "$SCHEDULE_ID" ]] || fail "no schedule id for: $line"
                w[2]="$SCHEDULE_ID"
            fi ;;
        secrets)
            # The value comes from stdin, as documented (never argv).
            if [[ "${w[1]}" == set ]]; then
                printf 'tour-secret-value' >"$TMP/secret"
                stdin="$TMP/secret"
            fi ;;
        completions)
            # `> ~/.local/share/...`: written to the temp folder instead.
            [[ "${w[2]:-}" == ">" ]] || fail "unexpected completions line: $line"
            stdout="$TMP/completions.out"
            w=("${w[@]:0:2}") ;;
    esac
    say "minitower ${w[*]}"

    if [[ "${w[0]}" == logs && " ${w[*]} " == *" --follow "* ]]; then
        # Reordered for time: following the 30-second countdown runs in the
        # background while the next lines (runs, show, cancel ...) run; `cancel`
        # ends the run, and with it the follow (checked after the tour).
        timeout 60 "$MT" "${w[@]}" >"$TMP/follow.log" 2>&1 &
        FOLLOW_PID=$!
        PIDS+=("$FOLLOW_PID")
        continue
    fi

    rc=0
    timeout 120 "$MT" "${w[@]}" <"$stdin" >"$stdout" 2>"$TMP/cmd.err" || rc=$?
    [[ "$stdout" == "$TMP/cmd.out" ]] && cat "$TMP/cmd.out"
    cat "$TMP/cmd.err" >&2
    ((rc == 0)) || fail "'$line' exited $rc"

    case "${w[0]}" in
        run)
            if [[ "${w[1]}" == hello ]]; then
                grep -qx "Hello, Ada!" "$TMP/cmd.out" || fail "'$line' did not print 'Hello, Ada!'"
            fi
            if [[ " ${w[*]} " == *" --detach "* ]]; then
                RUN_ID="$(sed -n 's/^Run \([0-9]\+\) queued.*/\1/p' "$TMP/cmd.out")"
                [[ -n "$RUN_ID" ]] || fail "no run id in the output of '$line'"
            fi ;;
        tokens)
            if [[ "${w[1]}" == create ]]; then
                TOKEN_ID="$(sed -n 's/.*(id \([0-9]\+\)[,)].*/\1/p' "$TMP/cmd.out")"
                [[ -n "$TOKEN_ID" ]] || fail "no token id in the output of '$line'"
            fi ;;
        schedules)
            if [[ "${w[1]}" == create ]]; then
                SCHEDULE_ID="$(sed -n 's/^Schedule \([0-9]\+\) created.*/\1/p' "$TMP/cmd.out")"
                [[ -n "$SCHEDULE_ID" ]] || fail "no schedule id in the output of '$line'"
            fi ;;
        completions)
            grep -q minitower "$TMP/completions.out" || fail "'$line' wrote no completion script" ;;
        init)
            [[ -f "${w[1]}/Towerfile" ]] || fail "'$line' made no ${w[1]}/Towerfile" ;;
    esac
done

if [[ -n "$FOLLOW_PID" ]]; then
    # Exit code as for `run`: 1 for a cancelled run.
    rc=0
    wait "$FOLLOW_PID" || rc=$?
    cat "$TMP/follow.log"
    ((rc == 1)) || fail "'minitower logs $RUN_ID --follow' exited $rc, expected 1 (run cancelled)"
    say "logs --follow ended with the cancelled run (exit 1, as documented)"
fi

say "README tour passed (${SECONDS}s)"
