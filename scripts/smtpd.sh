#!/usr/bin/env bash
# A real SMTP server for the mailer tests (crates/kifly/src/mail): installs PyPI aiosmtpd, pinned with
# its dependencies, into a venv under .ci/cache once (gitignored; SMTPD_CACHE_DIR overrides), and
# prints the venv's python on stdout. Pip's output goes to stderr. Use it as
#   export KIFLY_TEST_SMTPD_PYTHON=$(scripts/smtpd.sh)
# and the tests start `python -m aiosmtpd` on a free loopback port themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

# aiosmtpd and its dependencies as pip resolved them (pip freeze), so every run gets the same set.
PKGS=(aiosmtpd==1.4.6 atpublic==9.0.0 attrs==26.1.0)
CACHE=${SMTPD_CACHE_DIR:-$PWD/.ci/cache}
VENV=$CACHE/smtpd-venv
MARK="$VENV/.installed-$(echo "${PKGS[*]}" | sha256sum | cut -c1-16)"
if [ ! -f "$MARK" ]; then
  mkdir -p "$CACHE"
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PKGS[@]}" >&2
  "$VENV/bin/python" -c 'import aiosmtpd.handlers' >&2
  touch "$MARK"
fi
echo "$VENV/bin/python"
