#!/usr/bin/env bash
# Runs the dashboard's real-browser test (dashboard.test.mjs) with Debian's
# chromium driven by playwright-core. Installs chromium if it is missing.
#
# Env: ROLLCALL_BIN  server binary (default ../../target/debug/rollcall; build it first)
#      CHROMIUM      browser binary (default /usr/bin/chromium)
# Exits non-zero when anything fails.
set -euo pipefail
# A relative ROLLCALL_BIN is relative to the caller's directory, not this one.
if [ -n "${ROLLCALL_BIN:-}" ] && [ "${ROLLCALL_BIN#/}" = "$ROLLCALL_BIN" ]; then
  export ROLLCALL_BIN="$PWD/$ROLLCALL_BIN"
fi
cd "$(dirname "${BASH_SOURCE[0]}")"

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  if [ "$chromium" != /usr/bin/chromium ]; then
    echo "run.sh: CHROMIUM=$chromium is not executable" >&2
    exit 1
  fi
  echo "run.sh: installing Debian's chromium" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium
fi

bin="${ROLLCALL_BIN:-../../target/debug/rollcall}"
if [ ! -x "$bin" ]; then
  echo "run.sh: rollcall binary not found at $bin (run cargo build, or set ROLLCALL_BIN)" >&2
  exit 1
fi

npm ci --no-audit --no-fund
node --test dashboard.test.mjs
