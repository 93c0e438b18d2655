#!/usr/bin/env bash
# Run a command with D4H_TEST_POSTGRES_URL pointing at a fresh database on the local PostgreSQL
# (127.0.0.1:5432, user postgres, trust auth). Starts the server when it is not running, and
# drops the database afterwards whatever the command's outcome.
set -euo pipefail

PGHOST=127.0.0.1
PGPORT=5432
PGUSER=postgres

if ! pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; then
  if [ ! -d /etc/postgresql ] || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    echo "PostgreSQL is not installed; installing it from Debian's packages" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  echo "starting the local PostgreSQL server" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h "$PGHOST" -p "$PGPORT" && break; sleep 1; done
fi

DB="d4h_test_$(date +%s)_$$"
psql -q -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -c "CREATE DATABASE $DB" >/dev/null
cleanup() { psql -q -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || true; }
trap cleanup EXIT

export D4H_TEST_POSTGRES_URL="postgresql+psycopg://$PGUSER@$PGHOST:$PGPORT/$DB"
"$@"
