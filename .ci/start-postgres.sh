#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1 (random free port, temp data dir, random
# password) and print its SQLAlchemy URL on stdout. Everything else goes to stderr.
# Used by .ci/run for the humaneval storage tests (MEDMM_TEST_POSTGRES_URL). With
# MEDMM_PG_DIR_FILE set, the server's folder is written to that file, for .ci/stop-postgres.sh.
set -euo pipefail

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "start-postgres: no PostgreSQL server found under /usr/lib/postgresql" >&2
  exit 1
fi

dir=$(mktemp -d /tmp/medmm-pg.XXXXXX)
if [ -n "${MEDMM_PG_DIR_FILE:-}" ]; then printf '%s\n' "$dir" > "$MEDMM_PG_DIR_FILE"; fi
chmod 755 "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
printf '%s\n' "$password" > "$dir/pwfile"

# initdb refuses to run as root: use the postgres system user when we are root.
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || { echo "start-postgres: no 'postgres' user" >&2; exit 1; }
  chown -R postgres: "$dir"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

as_pg "$bindir/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 --pwfile="$dir/pwfile" \
  -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
rm -f "$dir/pwfile"
as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=off" start >&2 \
  || { cat "$dir/server.log" >&2; exit 1; }

export PGPASSWORD="$password"
for _ in $(seq 1 60); do
  "$bindir/pg_isready" -h 127.0.0.1 -p "$port" -U postgres >/dev/null 2>&1 && break
  sleep 0.5
done
"$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres medmm_test >&2
echo "start-postgres: server in $dir on 127.0.0.1:$port (stop: bash .ci/stop-postgres.sh $dir)" >&2
echo "postgresql+psycopg2://postgres:${password}@127.0.0.1:${port}/medmm_test"
