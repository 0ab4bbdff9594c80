#!/usr/bin/env bash
# MCP tool-call latency (issue 12's target: p99 <= 5 ms at 16 concurrent clients on SQLite):
# starts `dispatch serve` itself (release build) on SQLite and on PostgreSQL with ISSUES issues,
# and drives `tools/call` of get_issue and search_issues over HTTP with wrk at 1 and 16
# connections. Loopback only; every run is bounded in time.
#   benches/load/mcp.sh              # both stores
#   STORES=sqlite ISSUES=1000 DURATION=10s benches/load/mcp.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/dispatch-target}"
export CARGO_TARGET_DIR
DURATION="${DURATION:-10s}"
STORES="${STORES:-sqlite postgres}"
ISSUES="${ISSUES:-1000}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/dispatch_mcp_load}"
KEY="mcp-load-key-0123456789abcdef"

command -v wrk >/dev/null || { echo "installing wrk" >&2; apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p dispatch-server -j2
BIN="$CARGO_TARGET_DIR/release/dispatch"

start_server() { # $1 = store; sets PID BASE
  local store=$1 dir
  dir=$(mktemp -d)
  local env=(PORT=0 HOST=127.0.0.1 DISPATCH_API_KEY="$KEY" DISPATCH_PASSWORD=mcp-load-pw RUST_LOG=warn
             SPAWN_KILL_SWITCH=true DISPATCH_WORKERS=false)
  if [ "$store" = postgres ]; then
    psql "${PG_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS ${PG_URL##*/}" >/dev/null
    psql "${PG_URL%/*}/postgres" -qc "CREATE DATABASE ${PG_URL##*/}" >/dev/null
    env+=(PG_DATABASE_URL="$PG_URL")
  fi
  (cd "$dir" && exec env -i PATH="$PATH" "${env[@]}" "$BIN" serve >"$dir/out.log" 2>"$dir/err.log") &
  PID=$!
  BASE=""
  for _ in $(seq 1 1000); do
    BASE=$(sed -n 's/^Dispatch is listening on \([^ ]*\).*/\1/p' "$dir/out.log" 2>/dev/null | head -1)
    if [ -n "$BASE" ] && curl -fs "$BASE/api/health" >/dev/null 2>&1; then break; fi
    sleep 0.01
  done
  [ -n "$BASE" ] || { echo "the server did not start" >&2; cat "$dir/err.log" >&2; exit 1; }
}

seed() { # ISSUES issues through the REST API, 8 at a time
  python3 - "$BASE" "$KEY" "$ISSUES" <<'PY'
import concurrent.futures, http.client, json, sys, urllib.parse
base, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlparse(base)
words = ["checkout", "invoice", "login", "export", "search", "billing", "webhook", "upload"]
def one(i):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    body = json.dumps({"title": f"{words[i % 8]} fails for tenant {i}",
                       "description": f"Seeded issue {i}: {words[(i * 3) % 8]} returns 500 after deploy."})
    c.request("POST", "/api/issues", body=body, headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
    r = c.getresponse(); r.read(); c.close()
    return r.status
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    bad = [s for s in ex.map(one, range(n)) if s != 201]
assert not bad, bad[:5]
PY
}

# shellcheck disable=SC2154 # the RESULT line's variables are assigned by eval
run() { # $1 store $2 tool $3 connections
  local line rps threads=$(( $3 < 2 ? 1 : 2 ))
  line=$(TOOL=$2 KEY=$KEY IDENT="DISPATCH-$((ISSUES / 2))" QUERY="checkout" \
    wrk -t"$threads" -c"$3" -d"$DURATION" --timeout 10s -s benches/load/mcp.lua "$BASE" | grep '^RESULT')
  eval "${line#RESULT }"
  rps=$(awk -v r="$requests" -v d="$duration_s" 'BEGIN {printf "%.0f", r/d}')
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$rps" "$p50_ms" "$p99_ms" "$errors"
}

echo "| store | tool | clients | calls/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|---|"
for store in $STORES; do
  start_server "$store"
  seed
  for tool in get_issue search_issues; do
    run "$store" "$tool" 1
    run "$store" "$tool" 16
  done
  kill "$PID"; wait "$PID" 2>/dev/null || true
done
