#!/usr/bin/env bash
# CI entry point for the web UI. Expects MINITOWERD_BIN and MINITOWER_RUNNER_BIN to point
# at already-built binaries (defaults: $CARGO_TARGET_DIR/debug/...).
set -euo pipefail
cd "$(dirname "$0")"

echo "== npm ci"
npm ci --no-audit --no-fund

echo "== unit tests"
npm test

echo "== build"
npm run build

echo "== committed dist matches the build"
# dist/ is embedded into minitowerd, so the committed copy must be exactly what the sources build.
if ! git diff --exit-code --stat -- dist || [ -n "$(git status --porcelain --untracked-files=all -- dist)" ]; then
  git status --porcelain --untracked-files=all -- dist
  echo "web/dist is out of date: run 'npm run build' in web/ and commit web/dist" >&2
  exit 1
fi

echo "== browser tests"
if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
npm run e2e
