#!/usr/bin/env bash
# Callbacks from an agent workflow to Dispatch (spec section 7.3). Best-effort: every command
# exits 0 (a failed callback is a warning in the log, never a failed job), and all of them are
# skipped when DISPATCH_API_URL or DISPATCH_API_KEY is empty. JSON is built with jq from files and
# --arg values only; no untrusted text is ever spliced into JSON or a command line.
#
# Environment:
#   DISPATCH_API_URL, DISPATCH_API_KEY  server base URL and API key (secrets)
#   ISSUE_ID                            the issue (UUID or identifier)
#   DISPATCH_RUN_ID                     Dispatch's run id (input dispatch_run_id; may be empty)
#   WORKFLOW_TYPE                       error_fix | prd_investigate | prd_implement | qa | deep_research | auto_triage
#   DISPATCH_STATE                      directory for counters (default $RUNNER_TEMP/dispatch-state)
#   DISPATCH_STREAM_INTERVAL            seconds between terminal posts while streaming (default 10)
#
# Commands:
#   issue FILE                   PATCH /api/issues/{id} with the JSON object in FILE ("-": stdin)
#   run FILE                     PATCH /api/issues/{id}/runs/current?run_id=<dispatch_run_id>
#   activity TYPE FILE [JSON]    POST /api/issues/{id}/activity, content = FILE ("-": stdin),
#                                metadata = {run_id, github_run_id, run_url, workflow_type} + JSON
#   terminal FILE                POST /api/issues/{id}/terminal, the whole FILE as one chunk
#   stream FILE STOPFILE         post new complete lines of FILE every ~10 s until STOPFILE exists,
#                                then the rest; a heartbeat every ~60 s meanwhile
#   heartbeat                    POST /api/issues/{id}/runs/current/heartbeat?run_id=<dispatch_run_id>
#   flush FILE                   post what `stream` has not posted yet
#   plan FILE                    POST /api/issues/{id}/plan {action:"submit", content: FILE}
#   full-log FILE                activity agent_full_log: FILE cut to 512,000 bytes

set -uo pipefail

MAX_CHUNK=262144        # bytes per terminal post (the server takes up to 1 MiB)
MAX_FULL_LOG=512000     # bytes of the full log activity
STATE="${DISPATCH_STATE:-${RUNNER_TEMP:-/tmp}/dispatch-state}"
mkdir -p "$STATE" 2>/dev/null || true

log() { printf 'dispatch-callback: %s\n' "$*" >&2; }

enabled() {
  [ -n "${DISPATCH_API_URL:-}" ] && [ -n "${DISPATCH_API_KEY:-}" ] && [ -n "${ISSUE_ID:-}" ]
}

uri() { jq -rn --arg v "$1" '$v|@uri'; }

run_url() {
  if [ -n "${GITHUB_RUN_ID:-}" ]; then
    printf '%s/%s/actions/runs/%s' "${GITHUB_SERVER_URL:-https://github.com}" "${GITHUB_REPOSITORY:-}" "$GITHUB_RUN_ID"
  fi
}

# api METHOD PATH BODYFILE RESPFILE: one request; the answer's body goes to RESPFILE and its
# status to HTTP_CODE (000 when there was no answer). The key reaches curl on standard input, so
# it never shows in a process list (the agent runs beside the streaming loop).
HTTP_CODE=000
api() {
  local method="$1" path="$2" body="$3" resp="$4" key
  key="${DISPATCH_API_KEY//\\/\\\\}"
  key="${key//\"/\\\"}"
  local args=(-sS -K - -o "$resp" -w '%{http_code}' --max-time 30 --retry 2 --retry-delay 2
    -X "$method" -H 'Content-Type: application/json' -H 'Accept: application/json')
  [ -n "$body" ] && args+=(--data-binary "@$body")
  HTTP_CODE="$(printf 'header = "Authorization: Bearer %s"\n' "$key" \
    | curl "${args[@]}" "${DISPATCH_API_URL%/}${path}" 2>/dev/null)"
  case "$HTTP_CODE" in
    2??) return 0 ;;
    '') HTTP_CODE=000 ;;
  esac
  return 1
}

# send METHOD PATH JSON-FILE: one callback, a warning on failure.
send() {
  local resp ok=0
  resp="$(mktemp)"
  api "$1" "$2" "$3" "$resp" || {
    ok=1
    log "warning: $1 $2 answered $HTTP_CODE: $(head -c 300 "$resp" 2>/dev/null)"
  }
  rm -f "$resp"
  return "$ok"
}

issue_path() { printf '/api/issues/%s' "$(uri "$ISSUE_ID")"; }

stdin_file() {
  local f
  f="$(mktemp)"
  cat >"$f"
  printf '%s' "$f"
}

# body FILE: the JSON body in FILE ("-": standard input), checked; prints the file to send.
body() {
  local f
  f="$(mktemp)"
  if [ "$1" = "-" ]; then cat >"$f"; else cat -- "$1" >"$f" 2>/dev/null; fi
  if ! jq -e 'type == "object"' "$f" >/dev/null 2>&1; then
    log "warning: the body is not a JSON object; not sent"
    rm -f "$f"
    return 1
  fi
  printf '%s' "$f"
}

cmd_issue() {
  local f
  f="$(body "$1")" || return 0
  send PATCH "$(issue_path)" "$f"
  rm -f "$f"
}

# A heartbeat: once a run has one, Dispatch ends it when they stop (the agent's machine is gone)
# instead of waiting for the stale-run timeout.
cmd_heartbeat() {
  local q="" resp
  [ -n "${DISPATCH_RUN_ID:-}" ] && q="?run_id=$(uri "$DISPATCH_RUN_ID")"
  resp="$(mktemp)"
  api POST "$(issue_path)/runs/current/heartbeat$q" "" "$resp" \
    || log "warning: heartbeat answered HTTP $HTTP_CODE"
  rm -f "$resp"
}

cmd_run() {
  local f q=""
  f="$(body "$1")" || return 0
  [ -n "${DISPATCH_RUN_ID:-}" ] && q="?run_id=$(uri "$DISPATCH_RUN_ID")"
  send PATCH "$(issue_path)/runs/current$q" "$f"
  rm -f "$f"
}

# metadata EXTRA-JSON: what every activity carries, plus EXTRA.
metadata() {
  # The run it belongs to: our run id, else the GitHub run id (the original's convention).
  jq -n --arg run_id "${DISPATCH_RUN_ID:-${GITHUB_RUN_ID:-}}" --arg gh "${GITHUB_RUN_ID:-}" \
    --arg url "$(run_url)" --arg wt "${WORKFLOW_TYPE:-}" --argjson extra "$1" \
    '{run_id: $run_id, github_run_id: $gh, run_url: $url, workflow_type: $wt}
     | with_entries(select(.value != "")) + $extra'
}

cmd_activity() {
  local type="$1" file="$2" extra="${3:-}" f meta stdin=""
  [ -n "$extra" ] || extra='{}'
  if [ "$file" = "-" ]; then
    stdin="$(stdin_file)"
    file="$stdin"
  fi
  if ! meta="$(metadata "$extra" 2>/dev/null)"; then
    log "warning: activity $type: extra metadata is not a JSON object; sent without it"
    meta="$(metadata '{}')"
  fi
  f="$(jq -n --arg type "$type" --rawfile content "$file" --argjson metadata "$meta" \
    '{type: $type, content: $content, metadata: $metadata}' | stdin_file)"
  send POST "$(issue_path)/activity" "$f"
  rm -f "$f" ${stdin:+"$stdin"}
}

# post_chunk FILE: one terminal chunk with the next sequence number. The number is kept in
# $STATE/terminal.seq and set from the server's answer, so a retried post (same number) is
# stored once, and the numbering stays in step with the server.
post_chunk() {
  local file="$1" seq next f resp
  seq="$(cat "$STATE/terminal.seq" 2>/dev/null || echo 0)"
  next=$((seq + 1))
  f="$(jq -n --rawfile content "$file" --argjson seq "$next" --arg run "${DISPATCH_RUN_ID:-}" \
    '{content: $content, seq: $seq} + (if $run == "" then {} else {run_id: $run} end)' | stdin_file)"
  resp="$(mktemp)"
  if ! api POST "$(issue_path)/terminal" "$f" "$resp"; then
    case "$HTTP_CODE" in
      400 | 409 | 422)
        # Out of step (another writer, an older server): append without a number.
        log "terminal post $next answered $HTTP_CODE ($(head -c 200 "$resp")); sending it unnumbered"
        jq 'del(.seq)' "$f" >"$f.2" && mv "$f.2" "$f"
        if ! api POST "$(issue_path)/terminal" "$f" "$resp"; then
          log "warning: terminal post answered $HTTP_CODE; dropped"
          rm -f "$f" "$resp"
          return 0
        fi
        ;;
      *)
        log "warning: terminal post answered $HTTP_CODE; will retry"
        rm -f "$f" "$resp"
        return 1
        ;;
    esac
  fi
  seq="$(jq -r '.seq // empty' "$resp" 2>/dev/null)"
  case "$seq" in
    '' | *[!0-9]*) seq="$next" ;;
  esac
  printf '%s' "$seq" >"$STATE/terminal.seq"
  rm -f "$f" "$resp"
  return 0
}

cmd_terminal() {
  local file="$1"
  [ -s "$file" ] || return 0
  post_chunk "$file"
}

# post_new FILE [final]: posts the part of FILE after the saved offset, up to the last complete
# line (everything when final), at most MAX_CHUNK bytes a post. The offset advances only after
# the server took the chunk, so a failed post is retried with the same text and number.
post_new() {
  local file="$1" final="${2:-}" key off size len chunk
  [ -f "$file" ] || return 0
  key="$STATE/offset.$(printf '%s' "$file" | cksum | cut -d' ' -f1)"
  while :; do
    off="$(cat "$key" 2>/dev/null || echo 0)"
    size="$(wc -c <"$file")"
    [ "$size" -gt "$off" ] || return 0
    len=$((size - off))
    [ "$len" -gt "$MAX_CHUNK" ] && len="$MAX_CHUNK"
    chunk="$(mktemp)"
    tail -c "+$((off + 1))" "$file" | head -c "$len" >"$chunk"
    if [ -z "$final" ] && [ "$(tail -c 1 "$chunk" | od -An -tx1 | tr -d ' \n')" != "0a" ]; then
      # Whole lines only: drop the unfinished last line (a full chunk without any newline goes as is).
      LC_ALL=C sed '$d' "$chunk" >"$chunk.lines"
      if [ -s "$chunk.lines" ]; then
        mv "$chunk.lines" "$chunk"
        len="$(wc -c <"$chunk")"
      elif [ "$len" -lt "$MAX_CHUNK" ]; then
        rm -f "$chunk" "$chunk.lines"
        return 0
      fi
      rm -f "$chunk.lines"
    fi
    if ! post_chunk "$chunk"; then
      rm -f "$chunk"
      return 1
    fi
    rm -f "$chunk"
    printf '%s' "$((off + len))" >"$key"
  done
}

cmd_stream() {
  local file="$1" stop="$2" interval="${DISPATCH_STREAM_INTERVAL:-10}" i
  local beat=0
  cmd_heartbeat
  while [ ! -e "$stop" ]; do
    for ((i = 0; i < interval; i++)); do
      [ -e "$stop" ] && break
      sleep 1
    done
    post_new "$file" || true
    # Every ~60 s: the agent's machine is alive (Dispatch ends the run when heartbeats stop).
    beat=$((beat + interval))
    if [ "$beat" -ge 60 ]; then
      cmd_heartbeat
      beat=0
    fi
  done
  cmd_flush "$file"
}

cmd_flush() {
  local i
  for i in 1 2 3; do
    post_new "$1" final && return 0
    sleep "$i"
  done
  return 0
}

cmd_plan() {
  local file="$1" f
  f="$(jq -n --rawfile content "$file" '{action: "submit", content: $content}' | stdin_file)"
  send POST "$(issue_path)/plan" "$f"
  rm -f "$f"
}

cmd_full_log() {
  local file="$1" size tmp
  [ -s "$file" ] || return 0
  size="$(wc -c <"$file")"
  tmp="$(mktemp)"
  if [ "$size" -gt "$MAX_FULL_LOG" ]; then
    head -c "$MAX_FULL_LOG" "$file" >"$tmp"
    printf '\n\n[truncated: showing the first %s of %s bytes; the whole log is in the GitHub Actions run]\n' \
      "$MAX_FULL_LOG" "$size" >>"$tmp"
  else
    cat "$file" >"$tmp"
  fi
  cmd_activity agent_full_log "$tmp" "$(jq -n --argjson size "$size" '{log_bytes: $size}')"
  rm -f "$tmp"
}

main() {
  local cmd="${1:-}"
  shift || true
  if ! enabled; then
    [ -n "$cmd" ] && log "skipped $cmd: DISPATCH_API_URL / DISPATCH_API_KEY not set"
    return 0
  fi
  if ! command -v jq >/dev/null || ! command -v curl >/dev/null; then
    log "warning: jq and curl are needed for callbacks; skipped $cmd"
    return 0
  fi
  case "$cmd" in
    issue) cmd_issue "$@" ;;
    run) cmd_run "$@" ;;
    heartbeat) cmd_heartbeat ;;
    activity) cmd_activity "$@" ;;
    terminal) cmd_terminal "$@" ;;
    stream) cmd_stream "$@" ;;
    flush) cmd_flush "$@" ;;
    plan) cmd_plan "$@" ;;
    full-log) cmd_full_log "$@" ;;
    *) log "unknown command: $cmd" ;;
  esac
  return 0
}

main "$@" || true
exit 0
