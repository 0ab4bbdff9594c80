//! `dispatch status`: the fleet as a running server sees it — kill switch, runs by state, today's
//! budgets, concurrency and cost, stale runs, outcomes, and how late the dispatcher and sweeper
//! are — from `GET /api/spawns/stats` and `/metrics`, with the API key.

use dispatch_core::{Error, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

/// The status text, or an error saying why the server could not be asked.
pub async fn status(base: &str, api_key: &str) -> Result<String> {
    dispatch_adapters::ensure_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Error::internal("HTTP client").with_source(e))?;
    let get = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .bearer_auth(api_key)
            .send()
    };
    let unreachable =
        |e: reqwest::Error| Error::unavailable(format!("cannot reach {base}")).with_source(e);
    let r = get("/api/spawns/stats").await.map_err(unreachable)?;
    match r.status().as_u16() {
        200 => {}
        401 => {
            return Err(Error::new(
                dispatch_core::ErrorKind::Unauthorized,
                "the server refused the API key (DISPATCH_API_KEY, or the secrets file beside the database)",
            ));
        }
        s => return Err(Error::unavailable(format!("{base} answered {s}"))),
    }
    let stats: Value = r.json().await.map_err(unreachable)?;
    let metrics = match get("/metrics").await {
        Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
        _ => String::new(),
    };
    Ok(render(base, &stats, &metrics))
}

fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        _ => "?".into(),
    }
}

/// `dispatch_loop_lag_seconds{loop="<name>"} <value>` from the Prometheus text.
fn lag(metrics: &str, name: &str) -> Option<f64> {
    let prefix = format!("dispatch_loop_lag_seconds{{loop=\"{name}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

pub fn render(base: &str, s: &Value, metrics: &str) -> String {
    let mut out = String::new();
    let on = s["killSwitch"].as_bool().unwrap_or(false);
    let _ = writeln!(out, "Dispatch at {base}");
    let _ = writeln!(
        out,
        "kill switch   {}",
        if on { "ON — no agent starts" } else { "off" }
    );
    let _ = writeln!(
        out,
        "runs          queued {} · running {} · deferred {} · active {}",
        num(&s["queued"]),
        num(&s["running"]),
        num(&s["deferred"]),
        num(&s["active"])
    );
    let b = &s["budget"];
    let _ = writeln!(
        out,
        "budget today  error_fix {}/{} · requests {}/{}",
        num(&b["error_fix"]["used"]),
        num(&b["error_fix"]["max"]),
        num(&b["prd"]["used"]),
        num(&b["prd"]["max"])
    );
    let c = &s["concurrency"];
    let _ = writeln!(
        out,
        "concurrency   error_fix {}/{} · requests {}/{} · at most {} in all",
        num(&c["error_fix"]["active"]),
        num(&c["error_fix"]["max"]),
        num(&c["prd"]["active"]),
        num(&c["prd"]["max"]),
        num(&c["global"]["max"])
    );
    let cost = s["dailyCost"].as_f64().unwrap_or(0.0);
    let limit = s["dailyCostLimit"].as_f64().unwrap_or(0.0);
    let _ = writeln!(
        out,
        "cost today    ${cost:.2} of {}",
        if limit > 0.0 {
            format!("${limit:.2}")
        } else {
            "no limit".into()
        }
    );
    let _ = writeln!(out, "stale runs    {}", num(&s["staleCount"]));
    let outcomes = s["outcomes"]
        .as_object()
        .filter(|o| !o.is_empty())
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k} {}", num(v)))
                .collect::<Vec<_>>()
                .join(" · ")
        })
        .unwrap_or_else(|| "none yet".into());
    let _ = writeln!(out, "outcomes      {outcomes}");
    let loops = match (lag(metrics, "dispatcher"), lag(metrics, "sweeper")) {
        (Some(d), Some(w)) => format!("dispatcher {d:.1} s · sweeper {w:.1} s"),
        _ => "unknown (no /metrics)".into(),
    };
    let _ = writeln!(out, "loop lag      {loops}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_the_fleet_and_the_loop_lag() {
        let stats = json!({
            "active": 1, "queued": 2, "running": 1, "deferred": 3, "killSwitch": true,
            "budget": { "error_fix": { "used": 4, "max": 1000 }, "prd": { "used": 1, "max": 50 } },
            "concurrency": { "error_fix": { "active": 0, "max": 100 }, "prd": { "active": 1, "max": 10 }, "global": { "max": 110 } },
            "dailyCost": 12.5, "dailyCostLimit": 200.0, "staleCount": 0, "outcomes": { "success": 2 }
        });
        let metrics = "# TYPE dispatch_loop_lag_seconds gauge\ndispatch_loop_lag_seconds{loop=\"dispatcher\"} 0.25\ndispatch_loop_lag_seconds{loop=\"sweeper\"} 1.5\n";
        let text = render("http://x", &stats, metrics);
        assert!(text.contains("kill switch   ON"), "{text}");
        assert!(text.contains("queued 2 · running 1 · deferred 3"), "{text}");
        assert!(text.contains("requests 1/50"), "{text}");
        assert!(text.contains("$12.50 of $200.00"), "{text}");
        assert!(text.contains("success 2"), "{text}");
        assert!(
            text.contains("dispatcher 0.2 s · sweeper 1.5 s") || text.contains("dispatcher 0.3 s"),
            "{text}"
        );
        assert!(render("http://x", &stats, "").contains("unknown (no /metrics)"));
    }
}
