#!/usr/bin/env bash
# Purchase benchmark (not a test): complete purchases per second through the MPP rail and the
# built-in sandbox on `kifly serve --demo`, and the p99 of the paid retry.
#
#   scripts/purchase_bench.sh                      # SQLite
#   BENCH_DATABASE_URL=postgres://…/db scripts/purchase_bench.sh
#   BENCH_WORKERS=32 BENCH_DURATION=20 scripts/purchase_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${BENCH_WORKERS:-16}
DURATION=${BENCH_DURATION:-10}
cargo build --release --locked -p kifly --bin kifly --example purchase_bench >/dev/null
BIN=target/release/kifly
WORK=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
. scripts/lib.sh # wait_line

export KIFLY_RATE_LIMIT_AGENT=off KIFLY_RATE_LIMIT_ANON=off KIFLY_LOG=warn
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  export KIFLY_DATABASE_URL=$BENCH_DATABASE_URL KIFLY_SECRET_KEY=bench-secret-0123456789abcdef0123456789
  [ -n "${BENCH_REDIS_URL:-}" ] && export KIFLY_REDIS_URL=$BENCH_REDIS_URL
fi
"$BIN" --data-dir "$WORK/data" serve --demo --bind 127.0.0.1:0 >"$WORK/kifly.out" 2>"$WORK/kifly.err" &
URL=$(wait_line "$WORK/kifly.out" "kifly listening on" | awk '{print $NF}') || { cat "$WORK/kifly.err" >&2; exit 1; }
KEY=$(grep -m1 "network key" "$WORK/kifly.out" | awk '{print $NF}' || true)
if [ -z "$KEY" ]; then KEY=$("$BIN" --data-dir "$WORK/data" keys create --name bench --json | sed 's/.*"key":"\([^"]*\)".*/\1/'); fi
target/release/examples/purchase_bench "$URL" "$KEY" "$WORKERS" "$DURATION"
