//! Analytics tool providers for the orchestrator (the core's [`ToolProvider`] port): tools a
//! model calls to look at production while it talks with a person.
//!
//! - `loki-tools`: [`loki::LokiTools`] (`loki_errors`, `loki_search`, `loki_stats`,
//!   `loki_compare`, `loki_trace`) over Loki's HTTP API.
//! - `analytics-sql`: [`sql::SqlTools`] (`sql_query`, `sql_list_tables`, `sql_describe_table`,
//!   `sql_find_table`), read-only SQL on a PostgreSQL database.
//!
//! Each provider has a `…Config::from_lookup` (environment variables, `None` when its URL is
//! unset) and a `new`; the server wraps it in an `Arc<dyn ToolProvider>`.
//!
//! [`ToolProvider`]: dispatch_core::ports::ToolProvider

#[cfg(feature = "loki-tools")]
pub mod loki;

#[cfg(feature = "analytics-sql")]
pub mod sql;

use dispatch_core::{Error, Result};
use serde_json::Value;

/// A trimmed, non-empty environment variable.
pub(crate) fn env_var(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A positive integer environment variable within `min..=max`, or `default` when unset.
pub(crate) fn env_u64(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64> {
    match env_var(get, name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(Error::invalid(
                name,
                format!("{name} must be a whole number from {min} to {max}, not {v:?}"),
            )),
        },
    }
}

/// The tool's input as an object (a model may send `null` for "no arguments").
pub(crate) fn input_object(input: &Value) -> Result<serde_json::Map<String, Value>> {
    match input {
        Value::Object(o) => Ok(o.clone()),
        Value::Null => Ok(serde_json::Map::new()),
        _ => Err(Error::invalid(
            "input",
            "the tool's input must be a JSON object",
        )),
    }
}

/// An optional string argument; empty strings count as absent; numbers are accepted as text.
pub(crate) fn opt_str(args: &serde_json::Map<String, Value>, name: &str) -> Result<Option<String>> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(Error::invalid(name, format!("{name} must be a string"))),
    }
}

/// A required string argument.
pub(crate) fn req_str(args: &serde_json::Map<String, Value>, name: &str) -> Result<String> {
    opt_str(args, name)?.ok_or_else(|| Error::invalid(name, format!("{name} is required")))
}

/// An optional positive integer argument within `1..=max`, or `default`.
#[cfg(feature = "loki-tools")]
pub(crate) fn opt_limit(
    args: &serde_json::Map<String, Value>,
    name: &str,
    default: u32,
    max: u32,
) -> Result<u32> {
    let bad = || {
        Error::invalid(
            name,
            format!("{name} must be a whole number from 1 to {max}"),
        )
    };
    match args.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if (1..=u64::from(max)).contains(&v) => Ok(v as u32),
            _ => Err(bad()),
        },
        Some(Value::String(s)) => match s.trim().parse::<u32>() {
            Ok(v) if (1..=max).contains(&v) => Ok(v),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

/// Truncates `s` to at most `max` characters, marking the cut with `…`.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}
