#!/usr/bin/env bash
# Kills `sync-app sync` with SIGKILL in the middle of a 300,000-row sync and prints what
# `open_orders` holds afterwards (docs/RELIABILITY.md, "The process killed mid-sync").
#
#   scripts/kill-during-sync.sh sqlite     # kills after 0.3 … 6.0 s on a SQLite file
#   scripts/kill-during-sync.sh postgres   # kills when the run logs "Batch 15/" / "Batch 29/"
#
# Needs a release build (`cargo build --release -p sync-app`) and, for postgres, psql and
# the server at postgres://postgres@127.0.0.1:5432. Expect the previous snapshot (1000
# rows) after every kill that lands before the sync finished.
set -u
mode=${1:-sqlite}
B=${SYNC_APP:-${CARGO_TARGET_DIR:-target}/release/sync-app}
dir=$(mktemp -d)
export RUST_LOG=error
$B fake-erp --listen 127.0.0.1:14351 --orders 1000 > "$dir/small.log" 2>&1 & SMALL=$!
$B fake-erp --listen 127.0.0.1:14352 --orders 300000 > "$dir/big.log" 2>&1 & BIG=$!
trap 'kill $SMALL $BIG 2>/dev/null; rm -rf "$dir"' EXIT
sleep 0.5
S='server=tcp:127.0.0.1,14351;database=erp;user id=sync;password=sync;encrypt=DANGER_PLAINTEXT'
L='server=tcp:127.0.0.1,14352;database=erp;user id=sync;password=sync;encrypt=DANGER_PLAINTEXT'
if [ "$mode" = postgres ]; then
  db=sa_kill_$$
  psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $db"
  DB=postgres://postgres@127.0.0.1:5432/$db
  q() { psql -h 127.0.0.1 -U postgres -d "$db" -tAc "$1"; }
  DATABASE_URL=$DB MSSQL_URL="$S" $B sync > /dev/null
  for target in "Batch 15/" "Batch 29/"; do
    DATABASE_URL=$DB MSSQL_URL="$L" $B sync > /dev/null 2>&1 & P=$!
    for _ in $(seq 1 1000); do
      if q "select 1 from job_log_details d join job_logs j on j.id = d.job_log_id
            where d.message like '$target%' and j.id = (select max(id) from job_logs)" | grep -q 1; then
        kill -9 $P; break
      fi
      sleep 0.02
    done
    wait $P 2>/dev/null
    echo "killed at '$target': open_orders has $(q 'select count(*) from open_orders') rows"
    DATABASE_URL=$DB MSSQL_URL="$S" $B sync > /dev/null
  done
  psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE $db WITH (FORCE)"
else
  DB="sqlite://$dir/k.db?mode=rwc"
  DATABASE_URL=$DB MSSQL_URL="$S" $B sync > /dev/null
  for t in 0.3 0.8 1.5 2.2 2.8 3.4 4.0 4.6 5.2 6.0; do
    DATABASE_URL=$DB MSSQL_URL="$L" $B sync > /dev/null 2>&1 & P=$!
    sleep $t; kill -9 $P 2>/dev/null; wait $P 2>/dev/null; rc=$?
    echo "killed after ${t}s (exit $rc): open_orders has $(sqlite3 "$dir/k.db" 'select count(*) from open_orders') rows"
    DATABASE_URL=$DB MSSQL_URL="$S" $B sync > /dev/null
  done
  echo "integrity: $(sqlite3 "$dir/k.db" 'pragma integrity_check')"
fi
