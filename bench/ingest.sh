#!/usr/bin/env bash
# Store ingest benchmark (issue 4): sustained writes through the real `Store` against
# the local PostgreSQL, beside the ceiling measured in the same run: `psql \copy` of the
# same rows into a bare table with the same primary key.
#
#   bench/ingest.sh                  one result line per measurement on stdout
#
# Environment (defaults in brackets):
#   DEVICES [1000]   devices of 112 leaves; ROUNDS [11] rounds (first untimed): 1.12 M rows
#   WRITERS ["1 2 4"]  concurrent writers of the runs through the store
#   PG_ADMIN_URL [postgres://postgres@127.0.0.1:5432/postgres]  throwaway databases
#                    netpulse_ingest_<pid>_<n> are created there and dropped after
#   NO_BUILD=1       use target/release/netpulse-bench as it is
set -euo pipefail
cd "$(dirname "$0")/.."

devices=${DEVICES:-1000}
rounds=${ROUNDS:-11}
writers=${WRITERS:-1 2 4}
pg_admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
harness=target/release/netpulse-bench
if [ -z "${NO_BUILD:-}" ]; then
  echo "==> building the harness" >&2
  cargo build --release --locked -p netpulse-bench >&2
fi

work=$(mktemp -d)
dbs=()
cleanup() {
  for db in "${dbs[@]}"; do
    psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
base=${pg_admin%/*}
fresh_db() {
  local db="netpulse_ingest_$$_$1"
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
  psql "$pg_admin" -qc "CREATE DATABASE $db" >/dev/null
  dbs+=("$db")
  echo "$base/$db"
}

n=0
for w in $writers; do
  n=$((n + 1))
  url=$(fresh_db "$n")
  csv_args=()
  [ "$n" = 1 ] && csv_args=(--csv "$work/rows.csv")
  echo "==> store, $w writer(s)" >&2
  "$harness" ingest --database-url "$url" --devices "$devices" --rounds "$rounds" \
    --writers "$w" "${csv_args[@]}"
done

echo "==> ceiling: psql \\copy of the same rows into a bare table with the same key" >&2
url=$(fresh_db ceiling)
psql "$url" -qc "CREATE TABLE ceiling (series_id bigint NOT NULL, ts timestamptz NOT NULL,
  value double precision, PRIMARY KEY (series_id, ts))"
rows=$(wc -l <"$work/rows.csv")
start=$(date +%s.%N)
psql "$url" -qc "\\copy ceiling (series_id, ts, value) FROM '$work/rows.csv' WITH (FORMAT csv)"
end=$(date +%s.%N)
awk -v r="$rows" -v s="$start" -v e="$end" \
  'BEGIN { printf "ceiling rows=%d seconds=%.2f rows_per_s=%.0f\n", r, e - s, r / (e - s) }'
