#!/usr/bin/env bash
# External checks of the checkout payment rails with real third-party clients (run by CI after the
# test suite), against the real kifly binary started with `serve --demo` on 127.0.0.1:0:
#   1. mppx CLI (npm mppx 0.11.0) pays the MPP `stripe`/`charge` challenge of
#      POST /api/agent/cart/{id}/checkout, minting its shared payment token at the demo's Stripe
#      sandbox; then the order reads `paid` and the cart `completed`;
#   2. `mppx validate` on the same endpoint (another cart); non-passing checks must be in the
#      explicit allow-list of scripts/payments/checks.py (KNOWN_NON_PASSES, each with its reason);
#   3. the Python x402 client (PyPI x402 2.25.0) pays the x402 v2 challenge of the same endpoint with
#      a fresh key, through the demo's x402 facilitator sandbox;
#   4. the mppx CLI pays that x402 challenge too (`--protocol x402`, viem signing, fresh key): a
#      second, independent x402 implementation.
# Each check makes its own cart over REST (scripts/payments/checks.py). Clients are installed once
# into .ci/cache (gitignored; PAYMENT_CACHE_DIR overrides) from the lock files in scripts/payments/;
# later runs reuse them offline. KIFLY_BIN=path skips the build and runs that binary.
#
# What the clients need (read from their sources, mppx 0.11.0 dist/ and x402 2.25.0 python/):
# - mppx CLI is curl-like: `mppx URL -X POST -H 'Name: value' … [-d BODY | -J JSON] -i`; `-i` prints
#   every response's status line and headers to stdout (the 402, then the paid retry) and the final
#   body; progress goes to stderr; exit 75 = payment rejected, 22 = HTTP error with -f.
#   `--protocol mpp` makes it use the WWW-Authenticate: Payment challenge even though the same 402
#   also offers x402 (`auto` lists MPP first anyway).
# - The stripe plugin (dist/cli/plugins/stripe.js) needs a payment method, `-M paymentMethod=pm_card_visa`,
#   and a Stripe key, `MPPX_STRIPE_SECRET_KEY` (or `-M secretKey=`); an `sk_test_…` key means test mode
#   (the SPT is minted at the test helper; without the env var, `validate` shells out to
#   `stripe config --list`). `MPPX_STRIPE_SPT_URL` replaces the mint URL. The mint is
#   `POST <url>` with `Authorization: Basic base64(key:)`, `Stripe-Version: 2026-07-29.preview` and a
#   form `payment_method`, `usage_limits[currency]`, `usage_limits[max_amount]`,
#   `usage_limits[expires_at]` (the challenge expiry), `seller_details[network_id]` (test key) and
#   `metadata[…]`; it expects `{"id": "spt_…"}`. Kifly's sandbox accepts any sk_test_ key there.
# - On the paid retry mppx keeps our headers but sets `Authorization: Payment <credential>` (so the
#   API key goes in X-Api-Key) and keeps the same Idempotency-Key (402s are not stored, SPEC §6).
# - `mppx validate BASE --endpoint METHOD:/path [-H 'k: v'] [--body JSON] -j` prints a JSON report
#   (discovery, per-endpoint challenge / errorHandling / payment results with severity
#   pass|fail|warn|suggested|skip). It always fetches /llms.txt and /openapi.json; with an sk_test_
#   key it pays in test mode (pm_card_visa) and reports `Payment [stripe]: successful` only on a
#   2xx — a non-2xx is a mere `skip`, so checks.py requires that label to pass. Its malformed-
#   credential probe does not send the -H headers (no API key), so Kifly answers 401.
# - mppx's self-update check (incur) would call the npm registry: NO_UPDATE_NOTIFIER=1 turns it off;
#   HOME points at a throwaway dir so no account/config/cache lands in the real home.
# - x402 Python: `x402Client().register("eip155:*", ExactEvmClientScheme(EthAccountSigner(Account.create())))`
#   (x402.mechanisms.evm.exact / .signers), wrapped in `x402AsyncTransport` (x402.http.clients.httpx;
#   x402HttpxClient is the same as an AsyncClient subclass). On a 402 it decodes PAYMENT-REQUIRED
#   (v2, base64 JSON; v1 body as fallback), signs an EIP-3009 TransferWithAuthorization locally
#   (chain id from the CAIP-2 network, EIP-712 domain from extra.name/version) and retries once with
#   PAYMENT-SIGNATURE, keeping the request's other headers; x402HTTPClient.get_payment_settle_response
#   decodes PAYMENT-RESPONSE. Since 2.2x the client refuses payments over $1 unless told otherwise
#   (`set_spend_controls({"max_amount_per_payment": "$N"})`; checks.py uses the platform cart cap)
#   and pays only assets it knows (USDC on the CAIP-2 network) by default.
# - mppx --protocol x402 signs with MPPX_PRIVATE_KEY (or a keychain account); it needs extra.name and
#   extra.version (eip3009) and sends the paid retry to PAYMENT-REQUIRED's resource.url, which must
#   therefore be the absolute URL of the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

MPPX_VERSION=0.11.0 # pinned in scripts/payments/package.json (+ package-lock.json)
X402_PY=x402==2.25.0 # pinned in scripts/payments/requirements.txt
CACHE=${PAYMENT_CACHE_DIR:-$PWD/.ci/cache}
mkdir -p "$CACHE"

echo "-- installing the payment clients into $CACHE (once)"
NODE_DIR=$CACHE/payments-node
NODE_MARK="$NODE_DIR/.installed-$(cat scripts/payments/package.json scripts/payments/package-lock.json | sha256sum | cut -c1-16)"
if [ ! -f "$NODE_MARK" ]; then
  rm -rf "$NODE_DIR" && mkdir -p "$NODE_DIR"
  cp scripts/payments/package.json scripts/payments/package-lock.json "$NODE_DIR/"
  # mppx 0.11.0 wants viem as a peer; the pinned viem names a newer mppx as an optional peer.
  (cd "$NODE_DIR" && npm ci --legacy-peer-deps --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$NODE_MARK"
fi
VENV=$CACHE/payments-venv
PY_MARK="$VENV/.installed-$(sha256sum scripts/payments/requirements.txt | cut -c1-16)"
if [ ! -f "$PY_MARK" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r scripts/payments/requirements.txt
  touch "$PY_MARK"
fi
MPPX=$NODE_DIR/node_modules/.bin/mppx
PY=$VENV/bin/python
CHECKS=scripts/payments/checks.py
mppx_version=$("$MPPX" --version)
x402_version=$("$PY" -c 'import importlib.metadata as m; print(m.version("x402"))')
if [ "$mppx_version" != "$MPPX_VERSION" ] || [ "$x402_version" != "${X402_PY##*=}" ]; then
  echo "installed mppx $mppx_version / x402 $x402_version, expected $MPPX_VERSION / ${X402_PY##*=}" >&2
  exit 1
fi
echo "node $(node --version), mppx $mppx_version, python x402 $x402_version"

echo "-- starting kifly serve --demo"
if [ -z "${KIFLY_BIN:-}" ]; then
  cargo build --workspace --locked -q --bin kifly
  KIFLY_BIN=target/debug/kifly
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

. scripts/lib.sh # wait_line

KIFLY_LOG=warn "$KIFLY_BIN" serve --demo --bind 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/server.out" 2>&1 &
PIDS+=($!)
BASE=$(wait_line "$WORK/server.out" "kifly listening on" | awk '{print $NF}')
KEY=$(wait_line "$WORK/server.out" "network key" | awk '{print $NF}')
echo "server $BASE"

# The environment mppx runs in: offline, test-mode Stripe, SPTs minted by the demo sandbox.
mkdir -p "$WORK/home"
mppx() {
  HOME=$WORK/home NO_UPDATE_NOTIFIER=1 NO_COLOR=1 \
    MPPX_STRIPE_SECRET_KEY=sk_test_kifly_external_checks \
    MPPX_STRIPE_SPT_URL="$BASE/sandbox/stripe/v1/test_helpers/shared_payment/granted_tokens" \
    timeout 60 "$MPPX" "$@"
}
uuid() { "$PY" -c 'import uuid; print(uuid.uuid4())'; }
show() { # show TITLE FILE: a client's output, indented
  echo "    $1:" && sed 's/^/      /' "$2" && echo
}

# Each check is a function run in a `||` context, where `set -e` does not apply: every step returns
# explicitly on failure.
check_mppx_cli() {
  local cart rc=0
  cart=$("$PY" $CHECKS cart --base "$BASE" --key "$KEY") || return 1
  echo "    cart $cart"
  mppx "$BASE/api/agent/cart/$cart/checkout" -X POST --protocol mpp -i \
    -H "X-Api-Key: $KEY" -H "Idempotency-Key: $(uuid)" -M paymentMethod=pm_card_visa \
    >"$WORK/mppx.out" 2>"$WORK/mppx.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "    mppx exited with status $rc"
    show "mppx stdout" "$WORK/mppx.out" && show "mppx stderr" "$WORK/mppx.err"
    return 1
  fi
  "$PY" $CHECKS mppx --base "$BASE" --key "$KEY" --cart "$cart" --out "$WORK/mppx.out" || {
    show "mppx stderr" "$WORK/mppx.err"
    return 1
  }
}

check_mppx_validate() {
  local cart
  cart=$("$PY" $CHECKS cart --base "$BASE" --key "$KEY") || return 1
  echo "    cart $cart"
  "$PY" $CHECKS malformed --base "$BASE" --key "$KEY" --cart "$cart" || return 1
  # Its exit status is not used: checks.py judges the report (mppx exits 1 on any `fail`).
  mppx validate "$BASE" --endpoint "POST:/api/agent/cart/$cart/checkout" -j \
    -H "X-Api-Key: $KEY" -H "Idempotency-Key: $(uuid)" >"$WORK/validate.json" 2>"$WORK/validate.err" || true
  "$PY" $CHECKS validate --base "$BASE" --key "$KEY" --cart "$cart" --report "$WORK/validate.json" || {
    show "mppx validate report" "$WORK/validate.json" && show "mppx validate stderr" "$WORK/validate.err"
    return 1
  }
}

check_mppx_x402() {
  local cart private_key address rc=0
  cart=$("$PY" $CHECKS cart --base "$BASE" --key "$KEY") || return 1
  read -r private_key address < <("$PY" -c 'from eth_account import Account; a = Account.create(); print(a.key.hex(), a.address)') || return 1
  echo "    cart $cart, paying from a fresh account $address"
  MPPX_PRIVATE_KEY=0x${private_key#0x} mppx "$BASE/api/agent/cart/$cart/checkout" -X POST --protocol x402 -i \
    -H "X-Api-Key: $KEY" -H "Idempotency-Key: $(uuid)" >"$WORK/mppx-x402.out" 2>"$WORK/mppx-x402.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "    mppx exited with status $rc"
    show "mppx stdout" "$WORK/mppx-x402.out" && show "mppx stderr" "$WORK/mppx-x402.err"
    return 1
  fi
  "$PY" $CHECKS mppx --rail x402 --payer "$address" --base "$BASE" --key "$KEY" --cart "$cart" \
    --out "$WORK/mppx-x402.out" || {
    show "mppx stderr" "$WORK/mppx-x402.err"
    return 1
  }
}

check_x402_python() {
  timeout 120 "$PY" $CHECKS x402 --base "$BASE" --key "$KEY"
}

passed=0
failed=0
run() { # run NAME FUNCTION TITLE
  echo "-- $3"
  local status=0
  "$2" || status=$?
  if [ "$status" -eq 0 ]; then
    echo "PASS $1"
    passed=$((passed + 1))
  else
    echo "FAIL $1"
    failed=$((failed + 1))
  fi
}

run mppx-cli check_mppx_cli "1. mppx CLI pays the MPP stripe/charge challenge"
run mppx-validate check_mppx_validate "2. mppx validate on the checkout endpoint"
run x402-python check_x402_python "3. Python x402 client pays the x402 v2 challenge"
run mppx-x402 check_mppx_x402 "4. mppx CLI pays the same x402 v2 challenge (--protocol x402)"

if [ "$failed" -ne 0 ]; then
  echo "server log (last 40 lines):"
  tail -n 40 "$WORK/server.out" | sed 's/^/  /'
fi
echo "payment-checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
