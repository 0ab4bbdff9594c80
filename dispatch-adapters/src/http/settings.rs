//! Reading an adapter's settings through the server's lookup (`get`), the same way for every
//! service: values trimmed and empty ones absent, secrets refused when they cannot be a key,
//! base URLs checked — every error names its variable.

use dispatch_core::{Error, Result};
use reqwest::Url;

/// The variable's value, trimmed; `None` when unset or empty.
pub fn setting(get: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    get(var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A key or token: `None` when unset or empty (the adapter is off); refused when it holds
/// whitespace or control characters (a pasted line, not a key).
pub fn secret(get: &dyn Fn(&str) -> Option<String>, var: &str) -> Result<Option<String>> {
    let Some(v) = setting(get, var) else {
        return Ok(None);
    };
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            var,
            format!("{var} contains whitespace or control characters; paste the key alone"),
        ));
    }
    Ok(Some(v))
}

/// A service's base URL: http(s), with a host and without a query, its trailing slashes
/// dropped. `example` shows a right value in the error.
pub fn base_url(var: &str, s: &str, example: &str) -> Result<String> {
    let t = s.trim().trim_end_matches('/');
    match Url::parse(t) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.query().is_none() =>
        {
            Ok(t.to_string())
        }
        _ => Err(Error::invalid(
            var,
            format!("{var} must be an http(s) URL such as {example}, not {s:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn secrets_are_trimmed_absent_when_empty_and_refused_when_not_a_key() {
        let g = get(&[
            ("A", "  sk-1 \n"),
            ("B", "   "),
            ("C", "sk 1"),
            ("D", "sk\u{7}1"),
        ]);
        assert_eq!(secret(&g, "A").expect("a"), Some("sk-1".to_string()));
        assert_eq!(secret(&g, "B").expect("b"), None);
        assert_eq!(secret(&g, "Z").expect("z"), None);
        for var in ["C", "D"] {
            let e = secret(&g, var).expect_err(var);
            assert_eq!(e.field(), Some(var), "{e}");
        }
    }

    #[test]
    fn base_urls_are_http_with_a_host_and_no_query() {
        assert_eq!(
            base_url("U", "https://api.example.com/v1/", "x").expect("ok"),
            "https://api.example.com/v1"
        );
        for bad in ["api.example.com", "ftp://h/", "https://h/?a=1", "http://"] {
            let e = base_url("U", bad, "https://h").expect_err(bad);
            assert_eq!(e.field(), Some("U"), "{bad}: {e}");
            assert!(e.to_string().contains("such as https://h"), "{e}");
        }
    }
}
