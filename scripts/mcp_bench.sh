#!/usr/bin/env bash
# Benchmark (not a test): MCP `tools/call` against the REST twin, same server, same run, for
#   get_cart         vs  GET /api/agent/cart/{id}            (a cart with two lines)
#   search_products  vs  GET /api/agent/products?q=jacket    (limit 10)
# Prints requests/s and p50/p99 latency per pair (the median of BENCH_ROUNDS interleaved rounds, so
# drift in machine load hits both sides alike) and the MCP/REST throughput ratio.
#
#   scripts/mcp_bench.sh                     # 10 s per run, 32 connections, 2 wrk threads
#   BENCH_DURATION=30 BENCH_CONNECTIONS=64 scripts/mcp_bench.sh
#
# Needs wrk (apt-get install wrk). Builds the release binary; rate limits are off for the run. The
# load generator shares the machine with the server, so compare the pairs, not absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release --locked -q -p kifly --bin kifly
WORK=$(mktemp -d)
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

. scripts/lib.sh # wait_line

KIFLY_RATE_LIMIT_AGENT=off KIFLY_RATE_LIMIT_MCP=off KIFLY_RATE_LIMIT_ANON=off KIFLY_LOG=warn \
  target/release/kifly serve --demo --bind 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/server.out" 2>&1 &
SERVER_PID=$!
URL=$(wait_line "$WORK/server.out" "kifly listening on" | awk '{print $NF}')
KEY=$(wait_line "$WORK/server.out" "network key" | awk '{print $NF}')
AUTH="Authorization: Bearer $KEY"

json() { python3 -c "import json,sys; print(eval(sys.argv[1], {'d': json.load(sys.stdin), 'json': json}))" "$1"; }
rest() { curl -sf "$@" -H "$AUTH" -H "Content-Type: application/json"; }
CART=$(rest -X POST "$URL/api/agent/cart" -H "Idempotency-Key: b1" -d '{"seller_handle":"trailhead-outfitters"}' | json "d['cart_id']")
for n in 1 2; do
  VARIANT=$(rest "$URL/api/agent/products?seller_handle=trailhead-outfitters&limit=2" | json "d['itemListElement'][$n-1]['kifly:variantId']")
  rest -X POST "$URL/api/agent/cart/$CART/items" -H "Idempotency-Key: b-item-$n" -d "{\"variant_id\":\"$VARIANT\",\"quantity\":2}" >/dev/null
done

mcp_body() { printf '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","arguments":%s}}' "$1" "$2"; }
GET_CART_BODY=$(mcp_body get_cart "{\"cart_id\":\"$CART\"}")
SEARCH_BODY=$(mcp_body search_products '{"q":"jacket","limit":10}')

# Same answers on both sides before measuring anything.
for pair in "get_cart|$GET_CART_BODY|/api/agent/cart/$CART" "search|$SEARCH_BODY|/api/agent/products?q=jacket&limit=10"; do
  IFS='|' read -r name body path <<<"$pair"
  mcp=$(curl -sf "$URL/api/mcp" -H "$AUTH" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' -d "$body" | json "json.dumps(d['result']['structuredContent'], sort_keys=True) if not d['result']['isError'] else 'ERROR'")
  restv=$(rest "$URL$path" | json "json.dumps(d, sort_keys=True)")
  [ "$mcp" = "$restv" ] || { echo "$name: MCP and REST answers differ" >&2; exit 1; }
done

post_script() { # body -> path of a wrk script that POSTs it to /api/mcp
  local file="$WORK/post-$RANDOM.lua"
  printf 'wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Accept"] = "application/json, text/event-stream"\n' "$1" >"$file"
  echo "$file"
}

# run NAME ARGS... -> "rps p50 p99" (fails on any non-2xx answer or socket error)
run() {
  local name=$1; shift
  local out="$WORK/$name.txt"
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -H "$AUTH" "$@" >"$out"
  if grep -qE 'Non-2xx|Socket errors' "$out"; then echo "$name: errors during the run:" >&2; cat "$out" >&2; exit 1; fi
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$out")
  p50=$(awk '$1 == "50%" {print $2}' "$out")
  p99=$(awk '$1 == "99%" {print $2}' "$out")
  echo "$rps $p50 $p99"
}

echo "warming up"
wrk -t1 -c4 -d2s -H "$AUTH" "$URL/api/agent/cart/$CART" >/dev/null
wrk -t1 -c4 -d2s -H "$AUTH" -s "$(post_script "$SEARCH_BODY")" "$URL/api/mcp" >/dev/null

ROUNDS=${BENCH_ROUNDS:-3}
echo "measuring: $ROUNDS rounds of ${DURATION}s per run, REST and MCP interleaved, $CONNS connections, $THREADS wrk threads, $(nproc) cores shared with the server"
for round in $(seq 1 "$ROUNDS"); do
  run rest_get_cart "$URL/api/agent/cart/$CART" >>"$WORK/rest_get_cart.runs"
  run mcp_get_cart -s "$(post_script "$GET_CART_BODY")" "$URL/api/mcp" >>"$WORK/mcp_get_cart.runs"
  run rest_search "$URL/api/agent/products?q=jacket&limit=10" >>"$WORK/rest_search.runs"
  run mcp_search -s "$(post_script "$SEARCH_BODY")" "$URL/api/mcp" >>"$WORK/mcp_search.runs"
  echo "  round $round done"
done
median() { sort -n "$WORK/$1.runs" | sed -n "$(( (ROUNDS + 1) / 2 ))p"; } # the run with the median req/s
read -r r_cart_rps r_cart_p50 r_cart_p99 < <(median rest_get_cart)
read -r m_cart_rps m_cart_p50 m_cart_p99 < <(median mcp_get_cart)
read -r r_search_rps r_search_p50 r_search_p99 < <(median rest_search)
read -r m_search_rps m_search_p50 m_search_p99 < <(median mcp_search)

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
printf '\n%-34s %10s %10s %10s   (median of %s rounds)\n' "run" "req/s" "p50" "p99" "$ROUNDS"
printf '%-34s %10s %10s %10s\n' "REST GET /api/agent/cart/{id}" "$r_cart_rps" "$r_cart_p50" "$r_cart_p99"
printf '%-34s %10s %10s %10s\n' "MCP tools/call get_cart" "$m_cart_rps" "$m_cart_p50" "$m_cart_p99"
printf '%-34s %10s %10s %10s\n' "REST GET /api/agent/products" "$r_search_rps" "$r_search_p50" "$r_search_p99"
printf '%-34s %10s %10s %10s\n' "MCP tools/call search_products" "$m_search_rps" "$m_search_p50" "$m_search_p99"
echo
echo "MCP/REST throughput: get_cart $(ratio "$m_cart_rps" "$r_cart_rps"), search_products $(ratio "$m_search_rps" "$r_search_rps")"
