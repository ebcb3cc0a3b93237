#!/usr/bin/env bash
# Runs the Node `ws` permessage-deflate check (deflate.test.mjs) against the
# real rollcall binary.
#
# Env: ROLLCALL_BIN  server binary (default ../../target/debug/rollcall; build it first)
# Exits non-zero when anything fails.
set -euo pipefail
# A relative ROLLCALL_BIN is relative to the caller's directory, not this one.
if [ -n "${ROLLCALL_BIN:-}" ] && [ "${ROLLCALL_BIN#/}" = "$ROLLCALL_BIN" ]; then
  export ROLLCALL_BIN="$PWD/$ROLLCALL_BIN"
fi
cd "$(dirname "${BASH_SOURCE[0]}")"
bin="${ROLLCALL_BIN:-../../target/debug/rollcall}"
if [ ! -x "$bin" ]; then
  echo "run.sh: rollcall binary not found at $bin (run cargo build, or set ROLLCALL_BIN)" >&2
  exit 1
fi
npm ci --no-audit --no-fund
node --test deflate.test.mjs
