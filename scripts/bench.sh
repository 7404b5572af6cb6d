#!/usr/bin/env bash
# Load benchmark (not a test): Kifly on its embedded default against a bare axum "hello" endpoint,
# both measured by wrk on loopback in the same run.
#
#   scripts/bench.sh                 # SQLite (serve --demo)
#   BENCH_DATABASE_URL=postgres://…/db BENCH_REDIS_URL=redis://… scripts/bench.sh
#
# Reports requests/s and p50/p99 for: GET /hello (ceiling), GET /api/agent/cart/{id},
# POST /api/agent/cart/{id}/items (unique Idempotency-Keys), each at full load, then the two Kifly
# routes again paced at half their peak rate; plus the idle RSS with the demo catalog loaded.
# Needs wrk (apt-get install wrk). Rate limits are switched off for the run.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release --locked -p kifly --bin kifly --example hello >/dev/null
BIN=target/release/kifly
WORK=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

. scripts/lib.sh # wait_line

target/release/examples/hello 127.0.0.1:0 >"$WORK/hello.out" &
HELLO_PID=$!
HELLO=$(wait_line "$WORK/hello.out" "listening on" | awk '{print $NF}')

export KIFLY_RATE_LIMIT_AGENT=off KIFLY_RATE_LIMIT_ANON=off KIFLY_LOG=warn
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  export KIFLY_DATABASE_URL=$BENCH_DATABASE_URL KIFLY_SECRET_KEY=bench-secret-0123456789abcdef0123456789
  [ -n "${BENCH_REDIS_URL:-}" ] && export KIFLY_REDIS_URL=$BENCH_REDIS_URL
fi
"$BIN" --data-dir "$WORK/data" serve --demo --bind 127.0.0.1:0 >"$WORK/kifly.out" 2>"$WORK/kifly.err" &
KIFLY_PID=$!
URL=$(wait_line "$WORK/kifly.out" "kifly listening on" | awk '{print $NF}') || { cat "$WORK/kifly.err" >&2; exit 1; }
KEY=$(grep -m1 "network key" "$WORK/kifly.out" | awk '{print $NF}' || true)
if [ -z "$KEY" ]; then KEY=$("$BIN" --data-dir "$WORK/data" keys create --name bench --json | sed 's/.*"key":"\([^"]*\)".*/\1/'); fi
"$BIN" --data-dir "$WORK/data" limits set max_item_quantity=100000000 >/dev/null
sleep 2.5 # the server re-reads limits within 2 s
RSS_KB=$(awk '/VmRSS/ {print $2}' /proc/$KIFLY_PID/status)

CART=$(curl -sf -X POST "$URL/api/agent/cart" -H "Authorization: Bearer $KEY" -H "Idempotency-Key: bench-cart-$$" \
  -d '{"seller_handle":"trailhead-outfitters"}' | sed 's/.*"cart_id":"\([^"]*\)".*/\1/')
VARIANT=$(curl -sf "$URL/api/agent/products?seller_handle=trailhead-outfitters&limit=1" -H "Authorization: Bearer $KEY" \
  | grep -o '"kifly:variantId":"[^"]*"' | head -1 | cut -d'"' -f4)
curl -sf -X POST "$URL/api/agent/cart/$CART/items" -H "Authorization: Bearer $KEY" -H "Idempotency-Key: bench-item-$$" \
  -d "{\"variant_id\":\"$VARIANT\"}" >/dev/null
export KIFLY_KEY=$KEY KIFLY_CART=$CART KIFLY_VARIANT=$VARIANT

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME URL SCRIPT [delay_ms] [server_pid] [connections] -> "NAME rps p50 p99 [server CPU per request]"
# Server CPU per request is steadier than req/s on a shared machine: it does not depend on what else
# competes for the cores.
run() {
  local out pid=${5:-$KIFLY_PID} before after
  before=$(cpu_ticks "$pid")
  out=$(KIFLY_DELAY_MS=${4:-0} wrk -t"$THREADS" -c"${6:-$CONNS}" -d"${DURATION}s" --latency -s "$3" "$2")
  after=$(cpu_ticks "$pid")
  local rps p50 p99 errors requests cpu
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  errors=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  cpu=$(awk -v a="$before" -v b="$after" -v n="$requests" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%.1f", (b - a) * 1000000 / hz / n}')
  printf '%-34s %10s req/s   p50 %-9s p99 %-9s non-2xx %-4s server CPU %s us/req\n' \
    "$1" "$rps" "$p50" "$p99" "${errors:-0}" "$cpu"
  echo "$rps" >"$WORK/last_rps"
}

echo "kifly bench: ${DURATION}s per run, $CONNS connections, $THREADS wrk threads, $(nproc) cores"
echo "backend: ${KIFLY_DATABASE_URL:-sqlite (embedded)}${KIFLY_REDIS_URL:+ + redis}"
echo "idle RSS with the demo catalog: $((RSS_KB / 1024)) MiB"
run "GET /hello (bare axum ceiling)" "$HELLO/hello" scripts/bench/get.lua 0 "$HELLO_PID"
HELLO_RPS=$(cat "$WORK/last_rps")
run "GET /api/agent/cart/{id}" "$URL/api/agent/cart/$CART" scripts/bench/get.lua
READ_RPS=$(cat "$WORK/last_rps")
run "POST /api/agent/cart/{id}/items" "$URL" scripts/bench/post_items.lua
WRITE_RPS=$(cat "$WORK/last_rps")
# Paced at about half the peak: each connection waits PACE_MS between requests (wrk's delays are
# whole milliseconds), with as many connections as that rate needs (a cycle measured about 1 ms
# longer than the delay).
PACE_MS=4
READ_CONNS=$(awk -v r="$READ_RPS" -v d="$PACE_MS" 'BEGIN {c = int(r / 2 * (d + 1) / 1000 + 0.5); print (c < 2 ? 2 : c)}')
WRITE_CONNS=$(awk -v r="$WRITE_RPS" -v d="$PACE_MS" 'BEGIN {c = int(r / 2 * (d + 1) / 1000 + 0.5); print (c < 2 ? 2 : c)}')
run "GET cart at ~half peak ($READ_CONNS conns)" "$URL/api/agent/cart/$CART" scripts/bench/get.lua "$PACE_MS" "$KIFLY_PID" "$READ_CONNS"
run "POST items at ~half peak ($WRITE_CONNS conns)" "$URL" scripts/bench/post_items.lua "$PACE_MS" "$KIFLY_PID" "$WRITE_CONNS"
awk -v h="$HELLO_RPS" -v r="$READ_RPS" -v w="$WRITE_RPS" \
  'BEGIN {printf "reads: %.0f%% of the bare endpoint; idempotent writes: %.0f%%\n", 100 * r / h, 100 * w / h}'
