//! Message normalisation, rule for rule the original's `normalizeErrorMessage` (spec §5.1), with
//! JavaScript regex semantics: `\d`, `\w` and `\b` are ASCII-only, `\s` and `trim()` are
//! JavaScript's Unicode whitespace set (which, unlike Rust's, includes U+FEFF and excludes U+0085).

use regex::{NoExpand, Regex};
use std::borrow::Cow;
use std::sync::LazyLock;

/// JavaScript's `\s`: WhiteSpace (TAB, VT, FF, SP, NBSP, ZWNBSP and category Zs) plus
/// LineTerminator (LF, CR, LS, PS).
const JS_WS: &str = r"\t\n\x0B\x0C\r \x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}";

pub(crate) fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{0B}'
            | '\u{0C}'
            | '\r'
            | ' '
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
            | '\u{FEFF}'
    )
}

struct Rule {
    re: Regex,
    /// `None` = replace with a literal `*`-form given in `literal`.
    template: Option<&'static str>,
    literal: &'static str,
}

fn rule(pattern: &str, literal: &'static str) -> Rule {
    Rule { re: compile(pattern), template: None, literal }
}

fn rule_tpl(pattern: &str, template: &'static str) -> Rule {
    Rule { re: compile(pattern), template: Some(template), literal: "" }
}

fn compile(pattern: &str) -> Regex {
    // The patterns are constants of this file; a typo is a programming error caught by the
    // unit tests on first use, not a runtime condition.
    match Regex::new(pattern) {
        Ok(r) => r,
        Err(e) => panic!("normalisation pattern {pattern:?} does not compile: {e}"),
    }
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let b = r"(?-u:\b)";
    vec![
        // 2. UUIDs (case-insensitive hex).
        rule(
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            "*",
        ),
        // 3. Stripe-style prefixed ids; alternation order matters (leftmost-first, as in JS).
        rule_tpl(
            &format!(
                r"{b}(cus|sub|pi|pm|price|prod|inv|ch|re|txn|acct|evt|cs|si|seti|plink|whsec|sk|pk|rk)_[A-Za-z0-9]+"
            ),
            "${1}_*",
        ),
        // 4. JWTs.
        rule(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", "JWT_*"),
        // 5. ISO-8601 date-times.
        rule(
            r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:?[0-9]{2})?",
            "*",
        ),
        // 6. Bare dates.
        rule(&format!(r"{b}[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}{b}"), "*"),
        // 7. Unix timestamps (10–13 digits).
        rule(&format!(r"{b}[0-9]{{10,13}}{b}"), "*"),
        // 8. IPv4.
        rule(&format!(r"{b}[0-9]{{1,3}}\.[0-9]{{1,3}}\.[0-9]{{1,3}}\.[0-9]{{1,3}}{b}"), "*"),
        // 9. URL paths: keep scheme://host.
        rule_tpl(&format!(r"(https?://[^/{JS_WS}]+)(/[^{JS_WS}]*)"), "${1}/*"),
        // 10. Dollar amounts.
        rule(r"\$[0-9,]+(\.[0-9]{2})?", "$*"),
        // 11. Long hex strings (hashes).
        rule(&format!(r"{b}[0-9a-fA-F]{{32,}}{b}"), "*"),
        // 12. Remaining numbers of 5+ digits.
        rule(&format!(r"{b}[0-9]{{5,}}{b}"), "*"),
        // 13a. Runs of `*` separated only by whitespace collapse into one.
        rule(&format!(r"\*([{JS_WS}]*\*)+"), "*"),
    ]
});

/// Normalises an error message so that messages differing only in volatile tokens (ids, times,
/// amounts, hosts' paths) compare equal. Never panics on any input.
pub fn normalize_message(msg: &str) -> String {
    // 1. Empty → "".
    if msg.is_empty() {
        return String::new();
    }
    let mut cur: Cow<'_, str> = Cow::Borrowed(msg);
    for r in RULES.iter() {
        let next = match r.template {
            Some(t) => r.re.replace_all(&cur, t),
            None => r.re.replace_all(&cur, NoExpand(r.literal)),
        };
        if let Cow::Owned(s) = next {
            cur = Cow::Owned(s);
        }
    }
    // 13b. Trim with JavaScript's whitespace set.
    cur.trim_matches(is_js_whitespace).to_string()
}

#[cfg(test)]
#[path = "normalize_tests.rs"]
mod tests;
