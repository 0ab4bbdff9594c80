#!/usr/bin/env bash
# Load benchmark of the webhook ingest path: starts `dispatch serve` itself (release build) on
# SQLite and on PostgreSQL, drives it with wrk, and prints req/s, p50/p99, errors, peak RSS and
# cold start to first 200. Loopback only; every run is bounded in time.
#   benches/load/run.sh            # both stores
#   STORES=sqlite benches/load/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/dispatch-target}"
export CARGO_TARGET_DIR
DURATION="${DURATION:-10s}"
STORES="${STORES:-sqlite postgres}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/dispatch_load}"
KEY="load-test-key-0123456789abcdef"

command -v wrk >/dev/null || { echo "installing wrk" >&2; apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p dispatch-server -j2
BIN="$CARGO_TARGET_DIR/release/dispatch"

rss_peak_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
rss_now_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

start_server() { # $1 = store; sets PID BASE COLD_MS
  local store=$1 dir
  dir=$(mktemp -d)
  local env=(PORT=0 HOST=127.0.0.1 DISPATCH_API_KEY="$KEY" DISPATCH_PASSWORD=load-test-pw RUST_LOG=warn
             SPAWN_KILL_SWITCH=true DISPATCH_WORKERS=false)
  if [ "$store" = postgres ]; then
    psql "${PG_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS dispatch_load" >/dev/null
    psql "${PG_URL%/*}/postgres" -qc "CREATE DATABASE dispatch_load" >/dev/null
    env+=(PG_DATABASE_URL="$PG_URL")
    (cd "$dir" && env -i PATH="$PATH" "${env[@]}" "$BIN" migrate >/dev/null)
  fi
  local t0 out
  out="$dir/out.log"
  t0=$(date +%s%N)
  (cd "$dir" && exec env -i PATH="$PATH" "${env[@]}" "$BIN" serve >"$out" 2>"$dir/err.log") &
  PID=$!
  BASE=""
  for _ in $(seq 1 500); do
    BASE=$(sed -n 's/^Dispatch is listening on \([^ ]*\).*/\1/p' "$out" 2>/dev/null | head -1)
    if [ -n "$BASE" ] && curl -fs "$BASE/api/health" >/dev/null 2>&1; then break; fi
    sleep 0.002
  done
  COLD_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
  IDLE_KB=$(rss_now_kb "$PID")
}

# shellcheck disable=SC2154 # the RESULT line's variables are assigned by eval
run() { # $1 store $2 mode $3 conns
  local line rps
  line=$(MODE=$2 KEY=$KEY wrk -t2 -c"$3" -d"$DURATION" --timeout 10s -s benches/load/grafana.lua "$BASE" | grep '^RESULT')
  # The Lua script prints shell assignments: requests, duration_s, errors_*, p50_ms, p99_ms.
  eval "${line#RESULT }"
  rps=$(awk -v r="$requests" -v d="$duration_s" 'BEGIN {printf "%.0f", r/d}')
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$rps" "$p50_ms" "$p99_ms" "$((errors_status + errors_connect + errors_timeout))" "$(( $(rss_peak_kb "$PID") / 1024 ))"
}

echo "| store | path | connections | req/s | p50 ms | p99 ms | errors | peak RSS MB |"
echo "|---|---|---|---|---|---|---|---|"
for store in $STORES; do
  start_server "$store"
  run "$store" dedup 16
  run "$store" new 16
  run "$store" new 256
  echo "| $store | idle RSS $((IDLE_KB / 1024)) MB; start to first 200 through this script's shell poll: ${COLD_MS} ms | | | | | | |"
  kill "$PID"; wait "$PID" 2>/dev/null || true
done
# The shell poll above forks sed and curl per try, which adds milliseconds: cold start is measured
# by a poller without forks (fresh file: created and migrated; restart: same file).
if case " $STORES " in *" sqlite "*) true ;; *) false ;; esac && command -v python3 >/dev/null; then
  echo
  echo "SQLite cold start to first 200: $(python3 benches/load/cold_start.py "$BIN")"
fi
