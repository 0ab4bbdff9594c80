#!/usr/bin/env bash
# Runs every fuzz target for RUNS executions each (default 10 million), one after the other, from
# seed corpora made of the repository's own payload fixtures; prints each target's execution count
# and result and keeps the logs in fuzz/logs/. A crash stops the script with its input under
# fuzz/artifacts/TARGET/ (make it a regression test, then fix it).
#   fuzz/run.sh [RUNS] [TARGET...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Runs without a sanitizer (`--sanitizer none`):
# the fuzzed code is safe Rust, so what is looked for is panics, hangs and memory blow-ups,
# and the stable toolchain builds it.
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-10000000}
shift || true
all=(grafana_payload sentry_payload agent_stream_filter normalize_fingerprint error_event
    github_webhook webhook_signature claude_sse)
targets=("${@:-${all[@]}}")
[ "${#targets[@]}" -gt 0 ] || targets=("${all[@]}")

seed() {
    local target=$1
    shift
    mkdir -p "corpus/$target"
    for f in "$@"; do
        [ -f "$f" ] && cp -n "$f" "corpus/$target/" 2>/dev/null || true
    done
}
seed grafana_payload ../dispatch-adapters/tests/fixtures/grafana/*.json
seed sentry_payload ../dispatch-adapters/tests/fixtures/sentry/*.json
seed agent_stream_filter ../dispatch-core/tests/fixtures/claude-code/*.jsonl
mkdir -p corpus/error_event
cat > corpus/error_event/seed-event.json <<'JSON'
{"origin":"loki","source":"billing","feature":"charge","message":"Card declined for cus_123 after 3 tries","level":"error","error_message":"StripeCardError: declined","stack_trace":"at charge (src/billing.ts:42:7)","sample_lines":["line one"],"event_count":7,"first_seen":"2026-11-01T10:00:00Z","last_seen":null,"labels":{"app":"billing"},"values":{"A":"7"},"external_id":null,"link":"https://grafana.example/alert/1","title":null,"description":null,"priority":null}
JSON
seed github_webhook ../dispatch-server/tests/fixtures/github/*.json ../../shared/fixtures/github/*.json
# claude_sse: byte 0 is the chunk size, the rest the body.
mkdir -p corpus/claude_sse
for f in ../dispatch-adapters/tests/fixtures/anthropic/*.sse ../../shared/fixtures/anthropic/*.sse; do
    [ -f "$f" ] || continue
    for size in 1 7 64; do
        { printf "\\$(printf '%03o' "$size")"; cat "$f"; } >"corpus/claude_sse/$(basename "$f").$size"
    done
done
# webhook_signature: byte 0 the key length, the key, the signature line, the timestamp line
# (empty: none), the body; GitHub's signed fixtures with their documented secret.
mkdir -p corpus/webhook_signature
key="It's a Secret to Everybody"
for f in ../dispatch-server/tests/fixtures/github/*.json; do
    [ -f "$f" ] || continue
    sig=$(grep -A10 "\"$(basename "$f")\"" ../dispatch-server/tests/fixtures/github/headers.json \
        | grep -o 'sha256=[0-9a-f]*' | head -n 1 || true)
    [ -n "$sig" ] || continue
    { printf "\\$(printf '%03o' "${#key}")%s%s\n1800000000\n" "$key" "$sig"; cat "$f"; } \
        >"corpus/webhook_signature/$(basename "$f")"
done
mkdir -p corpus/normalize_fingerprint logs
printf 'User 3f2a9c1e-7b4d-4e8a-9f00-1a2b3c4d5e6f not found at 2026-11-01T10:00:00Z (id=12345)' \
    > corpus/normalize_fingerprint/seed-uuid

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dispatch-fuzz-target}"
for t in "${targets[@]}"; do
    started=$SECONDS
    # -rss_limit_mb: a parser that balloons on a small input is a finding too.
    if cargo fuzz run --sanitizer none --release "$t" "corpus/$t" -- \
        -runs="$runs" -max_len=65536 -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
        >"logs/$t.log" 2>&1; then
        result=ok
    else
        result=FAILED
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo "?")
    per_sec=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -n 1 || true)
    printf '%-24s %s  executions=%s  exec/s=%s  %s  %ss\n' "$t" "$result" "$execs" "$per_sec" "$cov" "$((SECONDS - started))"
    if [ "$result" != ok ]; then
        tail -n 40 "logs/$t.log"
        exit 1
    fi
done
