//! Prometheus text-format metrics: requests by route and status, ingest counts and latencies,
//! gate decisions by reason, runs by status, loop lag.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Latency buckets in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    total: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.total += 1;
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    ingest: Mutex<BTreeMap<(String, &'static str), u64>>,
    gate: Mutex<BTreeMap<String, u64>>,
    mcp: Mutex<BTreeMap<(String, &'static str), u64>>,
    mcp_latency: Mutex<BTreeMap<String, Histogram>>,
    pub dispatcher_lag_ms: AtomicU64,
    pub sweeper_lag_ms: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    pub fn request(&self, method: &str, route: &str, status: u16, secs: f64) {
        *lock(&self.requests)
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        lock(&self.latency)
            .entry(route.to_string())
            .or_default()
            .observe(secs);
    }

    /// `outcome` is `created`, `deduplicated` or `error`.
    pub fn ingest(&self, source: &str, outcome: &'static str) {
        *lock(&self.ingest)
            .entry((source.to_string(), outcome))
            .or_default() += 1;
    }

    /// Counts a spawn decision by its reason code (`allow` when allowed).
    pub fn gate_decision(&self, d: &dispatch_core::gate::Decision) {
        self.gate(d.reason().map(|r| r.code()).unwrap_or("allow"));
    }

    /// `reason` is the gate's code, or `allow`.
    pub fn gate(&self, reason: &str) {
        *lock(&self.gate).entry(reason.to_string()).or_default() += 1;
    }

    /// One MCP tool call: its outcome (`ok` or `error`) and latency, by tool.
    pub fn mcp_tool_call(&self, tool: &str, error: bool, secs: f64) {
        // Unknown names are folded together so that a client cannot grow the label set.
        let tool = if crate::mcp::tools::is_known(tool) {
            tool
        } else {
            "unknown"
        };
        *lock(&self.mcp)
            .entry((tool.to_string(), if error { "error" } else { "ok" }))
            .or_default() += 1;
        lock(&self.mcp_latency)
            .entry(tool.to_string())
            .or_default()
            .observe(secs);
    }

    /// Renders the text exposition format; `runs` are current run counts by status.
    pub fn render(&self, runs: &[(&str, u64)]) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP dispatch_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(s, "# TYPE dispatch_http_requests_total counter");
        for ((m, r, st), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                s,
                "dispatch_http_requests_total{{method=\"{m}\",route=\"{}\",status=\"{st}\"}} {n}",
                esc(r)
            );
        }
        let _ = writeln!(
            s,
            "# HELP dispatch_http_request_duration_seconds HTTP request latency by route."
        );
        let _ = writeln!(s, "# TYPE dispatch_http_request_duration_seconds histogram");
        histograms(
            &mut s,
            "dispatch_http_request_duration_seconds",
            "route",
            &lock(&self.latency),
        );
        let _ = writeln!(
            s,
            "# HELP dispatch_ingest_events_total Error events ingested by source and outcome."
        );
        let _ = writeln!(s, "# TYPE dispatch_ingest_events_total counter");
        for ((src, o), n) in lock(&self.ingest).iter() {
            let _ = writeln!(
                s,
                "dispatch_ingest_events_total{{source=\"{}\",outcome=\"{o}\"}} {n}",
                esc(src)
            );
        }
        let _ = writeln!(
            s,
            "# HELP dispatch_gate_decisions_total Spawn gate decisions by reason."
        );
        let _ = writeln!(s, "# TYPE dispatch_gate_decisions_total counter");
        for (r, n) in lock(&self.gate).iter() {
            let _ = writeln!(
                s,
                "dispatch_gate_decisions_total{{reason=\"{}\"}} {n}",
                esc(r)
            );
        }
        let _ = writeln!(
            s,
            "# HELP dispatch_mcp_tool_calls_total MCP tool calls by tool and outcome (ok, error)."
        );
        let _ = writeln!(s, "# TYPE dispatch_mcp_tool_calls_total counter");
        for ((t, o), n) in lock(&self.mcp).iter() {
            let _ = writeln!(
                s,
                "dispatch_mcp_tool_calls_total{{tool=\"{}\",outcome=\"{o}\"}} {n}",
                esc(t)
            );
        }
        let _ = writeln!(
            s,
            "# HELP dispatch_mcp_tool_call_duration_seconds MCP tool call latency by tool."
        );
        let _ = writeln!(
            s,
            "# TYPE dispatch_mcp_tool_call_duration_seconds histogram"
        );
        histograms(
            &mut s,
            "dispatch_mcp_tool_call_duration_seconds",
            "tool",
            &lock(&self.mcp_latency),
        );
        let _ = writeln!(s, "# HELP dispatch_runs Runs by status right now.");
        let _ = writeln!(s, "# TYPE dispatch_runs gauge");
        for (st, n) in runs {
            let _ = writeln!(s, "dispatch_runs{{status=\"{st}\"}} {n}");
        }
        let _ = writeln!(
            s,
            "# HELP dispatch_loop_lag_seconds How late the last dispatcher/sweeper pass ran."
        );
        let _ = writeln!(s, "# TYPE dispatch_loop_lag_seconds gauge");
        let _ = writeln!(
            s,
            "dispatch_loop_lag_seconds{{loop=\"dispatcher\"}} {}",
            self.dispatcher_lag_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(
            s,
            "dispatch_loop_lag_seconds{{loop=\"sweeper\"}} {}",
            self.sweeper_lag_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        s
    }
}

/// The `_bucket`, `_sum` and `_count` lines of one histogram per label value.
fn histograms(s: &mut String, name: &str, label: &str, hs: &BTreeMap<String, Histogram>) {
    use std::fmt::Write as _;
    for (v, h) in hs {
        let v = esc(v);
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "{name}_bucket{{{label}=\"{v}\",le=\"{b}\"}} {}",
                h.counts.get(i).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            s,
            "{name}_bucket{{{label}=\"{v}\",le=\"+Inf\"}} {}",
            h.total
        );
        let _ = writeln!(s, "{name}_sum{{{label}=\"{v}\"}} {}", h.sum);
        let _ = writeln!(s, "{name}_count{{{label}=\"{v}\"}} {}", h.total);
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
