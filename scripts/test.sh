#!/usr/bin/env bash
# Runs the whole test suite (README: `make test`; CI: .ci/run calls this).
# Installs what the tests need and starts PostgreSQL and Redis when they are down.
# With CI=true a missing service fails the tests that need it; elsewhere they skip.
set -uo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/storescu ] || missing+=(dcmtk)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing ${missing[*]}"
    (apt-get update -qq && apt-get install -y -qq "${missing[@]}") >/tmp/dosereg-apt.log 2>&1 || echo "apt-get install failed (see /tmp/dosereg-apt.log)"
  else
    echo "not root: cannot install ${missing[*]}; tests needing them will skip (or fail with CI=true)"
  fi
fi
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install -q --disable-pip-version-check -r requirements-test.txt 2>&1 | grep -v "Running pip as the 'root' user" || true

if command -v pg_isready >/dev/null && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  [ -d /etc/postgresql ] && pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 20); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
fi
if command -v redis-cli >/dev/null && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
  for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi

if [ -z "${DATABASE_URL:-}" ] && command -v pg_isready >/dev/null && pg_isready -h 127.0.0.1 -p 5432 -q; then
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/dosereg"
fi
if [ -z "${REDIS_URL:-}" ] && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  export DOSEREG_TEST_REDIS_URL="redis://127.0.0.1:6379/15"
fi
# Unit tests run tasks in-process; end-to-end tests start real workers against DOSEREG_TEST_REDIS_URL.
unset REDIS_URL
# One id per run: its own test database (test_dosereg_<id>) and broker key prefix (tests/conftest.py).
export DOSEREG_TEST_RUN_ID="${DOSEREG_TEST_RUN_ID:-$(date +%s)$$}"
export BROKER_KEY_PREFIX="${BROKER_KEY_PREFIX:-dosereg-test-$DOSEREG_TEST_RUN_ID:}"
if [ -z "${DOSEREG_VAR_DIR:-}" ]; then
  DOSEREG_VAR_DIR="$(mktemp -d /tmp/dosereg-test.XXXXXX)"
  trap 'rm -rf "$DOSEREG_VAR_DIR"' EXIT
fi
export DOSEREG_VAR_DIR
echo "database: ${DATABASE_URL:-sqlite (embedded)}; broker for e2e: ${DOSEREG_TEST_REDIS_URL:-none}"
"$PYTHON" -m pytest "$@"
status=$?
[ $status -eq 5 ] && { echo "no tests ran"; exit 1; }
exit $status
