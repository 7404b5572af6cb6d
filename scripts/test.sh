#!/usr/bin/env bash
# The whole test suite, on every backend Kifly supports:
#   1. every crate's tests on the embedded default (SQLite, in-process rate limits), then the mail
#      tests against a real SMTP server (PyPI aiosmtpd, installed once by scripts/smtpd.sh);
#   2. the storage conformance suite and the HTTP/CLI suite on PostgreSQL;
#   3. the HTTP/CLI suite on PostgreSQL + Redis, with the three-node cluster tests;
#   4. the PostgreSQL outage test, alone (it stops and restarts the local PostgreSQL).
# Steps 2-4 need PostgreSQL and Redis on localhost (.ci/run starts them). On a machine without them,
# KIFLY_TEST_MATRIX=sqlite runs step 1 only. Extra arguments go to every `cargo test`. Every step
# selects with `--workspace --test NAME` so features unify exactly as in step 1 and nothing rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${KIFLY_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS=${KIFLY_TEST_REDIS:-redis://127.0.0.1:6379}

echo "== 1/4 sqlite"
cargo test --workspace --locked "$@"
# The mail tests that need a real SMTP server (PyPI aiosmtpd, installed once into .ci/cache).
KIFLY_TEST_SMTPD_PYTHON=$(scripts/smtpd.sh)
export KIFLY_TEST_SMTPD_PYTHON
cargo test --workspace --locked --lib "$@" -- --ignored mail::
cargo test --workspace --locked --test it "$@" -- --ignored smtp_
if [ "${KIFLY_TEST_MATRIX:-all}" = sqlite ]; then exit 0; fi

echo "== 2/4 postgres"
KIFLY_TEST_DATABASE_URL=$PG cargo test --workspace --locked --test conformance "$@"
KIFLY_TEST_DATABASE_URL=$PG cargo test --workspace --locked --test it "$@"

echo "== 3/4 postgres + redis, three-node cluster"
KIFLY_TEST_DATABASE_URL=$PG KIFLY_TEST_REDIS_URL=$REDIS \
  cargo test --workspace --locked --test it "$@" -- --include-ignored --skip fault_

echo "== 4/4 postgres outage"
KIFLY_TEST_DATABASE_URL=$PG KIFLY_TEST_REDIS_URL=$REDIS \
  cargo test --workspace --locked --test it "$@" -- --ignored --test-threads=1 fault_
