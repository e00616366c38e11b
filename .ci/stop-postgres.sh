#!/usr/bin/env bash
# Stop a server started by .ci/start-postgres.sh and delete its temporary folder.
# Usage: bash .ci/stop-postgres.sh DIR   (DIR: the /tmp/medmm-pg.* folder start-postgres.sh made)
set -euo pipefail

dir=${1:?usage: stop-postgres.sh DIR}
case "$dir" in
  /tmp/medmm-pg.*) ;;
  *) echo "stop-postgres: $dir is not a folder made by start-postgres.sh" >&2; exit 1 ;;
esac
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# A folder whose server is gone already (machine restarted) is only removed.
if [ -d "$dir/data" ] && as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
  as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
fi
rm -rf "$dir"
