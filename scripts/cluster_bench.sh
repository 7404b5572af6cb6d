#!/usr/bin/env bash
# Cluster load benchmark (not a test): the read and write runs of scripts/bench.sh against one
# SQLite node, one PostgreSQL node and three PostgreSQL + Redis nodes, all in the same run, with the
# ratios to the SQLite node. The three nodes are loaded together (one wrk per node, the connections
# split between them), as a load balancer would spread them.
#
#   scripts/cluster_bench.sh        # needs wrk, PostgreSQL and Redis on localhost
#
# On a small machine the nodes, PostgreSQL, Redis and wrk share the same cores: the numbers show what
# the cluster costs per request, not what more machines would add.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-30}
PG=${KIFLY_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS=${KIFLY_TEST_REDIS:-redis://127.0.0.1:6379}
DB=kifly_cluster_bench_$$
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release --locked -p kifly --bin kifly >/dev/null
BIN=target/release/kifly
WORK=$(mktemp -d)
cleanup() {
  kill $(cat "$WORK"/*.pid 2>/dev/null) $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$PG" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
. scripts/lib.sh # wait_line
export KIFLY_RATE_LIMIT_AGENT=off KIFLY_RATE_LIMIT_ANON=off KIFLY_LOG=warn

# start NAME [env…]: a node on a free port; prints its URL.
start() {
  local name=$1
  shift
  env "$@" "$BIN" --data-dir "$WORK/$name" serve --demo --bind 127.0.0.1:0 >"$WORK/$name.out" 2>"$WORK/$name.err" &
  echo $! >"$WORK/$name.pid"
  wait_line "$WORK/$name.out" "kifly listening on" | awk '{print $NF}'
}

# prepare URL: a key, a cart with one line, and the variant; sets KEY CART VARIANT.
prepare() {
  local url=$1 dir=$2
  KEY=$(grep -m1 "network key" "$WORK/$dir.out" | awk '{print $NF}' || true)
  if [ -z "$KEY" ]; then
    KEY=$(env "${NODE_ENV[@]}" "$BIN" --data-dir "$WORK/$dir" keys create --name bench --json | sed 's/.*"key":"\([^"]*\)".*/\1/')
  fi
  CART=$(curl -sf -X POST "$url/api/agent/cart" -H "Authorization: Bearer $KEY" -H "Idempotency-Key: c-$dir" \
    -d '{"seller_handle":"trailhead-outfitters"}' | sed 's/.*"cart_id":"\([^"]*\)".*/\1/')
  VARIANT=$(curl -sf "$url/api/agent/products?seller_handle=trailhead-outfitters&limit=1" -H "Authorization: Bearer $KEY" \
    | grep -o '"kifly:variantId":"[^"]*"' | head -1 | cut -d'"' -f4)
  curl -sf -X POST "$url/api/agent/cart/$CART/items" -H "Authorization: Bearer $KEY" -H "Idempotency-Key: i-$dir" \
    -d "{\"variant_id\":\"$VARIANT\"}" >/dev/null
}

# load SCRIPT PATH URL… : one wrk per URL at the same time; prints the summed req/s and the worst p99.
load() {
  local script=$1 path=$2
  shift 2
  local n=$# i=0
  for url in "$@"; do
    KIFLY_KEY=$KEY KIFLY_CART=$CART KIFLY_VARIANT=$VARIANT \
      wrk -t1 -c$((CONNS / n)) -d"${DURATION}s" --latency -s "$script" "$url$path" >"$WORK/wrk.$i" &
    i=$((i + 1))
  done
  wait $(jobs -p | tail -n "$n") 2>/dev/null || true
  awk '/Requests\/sec/ {r += $2} $1=="99%" {print $2 > "/dev/stderr"} END {printf "%.0f\n", r}' "$WORK"/wrk.* 2>"$WORK/p99"
  rm -f "$WORK"/wrk.*
}

report() { printf '%-28s GET cart %8s req/s (p99 %s)   POST items %8s req/s (p99 %s)\n' "$1" "$2" "$3" "$4" "$5"; }
p99s() { sort -h "$WORK/p99" | tail -1; }

NODE_ENV=()
SQLITE=$(start sqlite)
prepare "$SQLITE" sqlite
"$BIN" --data-dir "$WORK/sqlite" limits set max_item_quantity=100000000 >/dev/null
sleep 2.5
S_GET=$(load scripts/bench/get.lua "/api/agent/cart/$CART" "$SQLITE"); S_GET_P99=$(p99s)
S_POST=$(load scripts/bench/post_items.lua "" "$SQLITE"); S_POST_P99=$(p99s)
kill "$(cat "$WORK/sqlite.pid")" 2>/dev/null || true

psql "$PG" -qc "CREATE DATABASE $DB" >/dev/null
PGURL="${PG%/*}/$DB"
NODE_ENV=(KIFLY_DATABASE_URL="$PGURL" KIFLY_REDIS_URL="$REDIS" KIFLY_SECRET_KEY=cluster-bench-secret-0123456789abcdef01234567)
N1=$(start n1 "${NODE_ENV[@]}")
prepare "$N1" n1
env "${NODE_ENV[@]}" "$BIN" --data-dir "$WORK/n1" limits set max_item_quantity=100000000 >/dev/null
sleep 2.5
P_GET=$(load scripts/bench/get.lua "/api/agent/cart/$CART" "$N1"); P_GET_P99=$(p99s)
P_POST=$(load scripts/bench/post_items.lua "" "$N1"); P_POST_P99=$(p99s)
N2=$(start n2 "${NODE_ENV[@]}")
N3=$(start n3 "${NODE_ENV[@]}")
C_GET=$(load scripts/bench/get.lua "/api/agent/cart/$CART" "$N1" "$N2" "$N3"); C_GET_P99=$(p99s)
C_POST=$(load scripts/bench/post_items.lua "" "$N1" "$N2" "$N3"); C_POST_P99=$(p99s)

echo "cluster bench: ${DURATION}s per run, $CONNS connections in total, $(nproc) cores"
report "sqlite, 1 node" "$S_GET" "$S_GET_P99" "$S_POST" "$S_POST_P99"
report "postgres+redis, 1 node" "$P_GET" "$P_GET_P99" "$P_POST" "$P_POST_P99"
report "postgres+redis, 3 nodes" "$C_GET" "$C_GET_P99" "$C_POST" "$C_POST_P99"
awk -v sg="$S_GET" -v sp="$S_POST" -v pg="$P_GET" -v pp="$P_POST" -v cg="$C_GET" -v cp="$C_POST" 'BEGIN {
  printf "ratio to the SQLite node: 1 PG node GET %.2fx POST %.2fx; 3 PG nodes GET %.2fx POST %.2fx\n", pg/sg, pp/sp, cg/sg, cp/sp }'
