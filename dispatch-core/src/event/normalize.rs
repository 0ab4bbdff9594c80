//! Message normalisation, rule for rule the original's `normalizeErrorMessage` (spec §5.1), with
//! JavaScript regex semantics: `\d`, `\w` and `\b` are ASCII-only, `\s` and `trim()` are
//! JavaScript's Unicode whitespace set (which, unlike Rust's, includes U+FEFF and excludes U+0085).
//!
//! The original's regexes, in order:
//!
//! | rule | JavaScript                                                                    | replacement |
//! |------|-------------------------------------------------------------------------------|-------------|
//! | 2    | `/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi`             | `*`         |
//! | 3    | `/\b(cus\|sub\|pi\|…\|rk)_[A-Za-z0-9]+/g`                                     | `$1_*`      |
//! | 4    | `/eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/g`                      | `JWT_*`     |
//! | 5    | `/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z\|[+-]\d{2}:?\d{2})?/g`          | `*`         |
//! | 6    | `/\b\d{4}-\d{2}-\d{2}\b/g`                                                    | `*`         |
//! | 7    | `/\b\d{10,13}\b/g`                                                            | `*`         |
//! | 8    | `/\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b/g`                                   | `*`         |
//! | 9    | `/(https?:\/\/[^/\s]+)(\/[^\s]*)/g`                                           | `$1/*`      |
//! | 10   | `/\$[\d,]+(\.\d{2})?/g`                                                       | `$*`        |
//! | 11   | `/\b[0-9a-f]{32,}\b/gi`                                                       | `*`         |
//! | 12   | `/\b\d{5,}\b/g`                                                               | `*`         |
//! | 13   | `/\*(\s*\*)+/g`, then `.trim()`                                               | `*`         |
//!
//! Rules 3, 4, 8, 9, 10 and 13 run as Rust regexes (ASCII `(?-u:\b)`, `[0-9]` for `\d`, the
//! JavaScript `\s` set spelled out), each skipped when a literal every match needs is absent.
//! Rules 2, 5, 6, 7, 11 and 12 are the hot ones on long stack traces and are hand-written scanners
//! that give exactly the regex's matches:
//!
//! - rules 2, 5 and 6 have a fixed-length head with a literal at a fixed offset (`-` at 8, `T` at
//!   10, `-` at 4), so the leftmost match is found by jumping from one occurrence of that literal
//!   to the next and checking the window around it;
//! - rules 7, 11 and 12 have the shape `\b[X]{m,n}\b` with X a subset of the ASCII word characters,
//!   so they match exactly the whole maximal runs of ASCII word characters (`[A-Za-z0-9_]+`) that
//!   consist only of X and have a length in `m..=n`; such a run is found by looking at every m-th
//!   byte only.
//!
//! The unit tests keep the plain regex version of every rule and compare the two on generated
//! input.

use regex::{NoExpand, Regex};
use std::borrow::Cow;
use std::sync::LazyLock;

/// JavaScript's `\s`: WhiteSpace (TAB, VT, FF, SP, NBSP, ZWNBSP and category Zs) plus
/// LineTerminator (LF, CR, LS, PS).
pub(crate) const JS_WS: &str = r"\t\n\x0B\x0C\r \x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}";

pub(crate) fn is_js_whitespace(c: char) -> bool {
    // TAB, LF, VT, FF, CR are U+0009..=U+000D.
    matches!(c, '\t'..='\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'..='\u{200A}')
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\u{FEFF}'
        )
}

/// A rule run as a regex. `needle` is a literal that every match contains: without it the regex
/// cannot match and is not run.
struct Rule {
    re: Regex,
    needle: &'static str,
    replacement: Replacement,
}

enum Replacement {
    /// Inserted as is (`$` is not special).
    Literal(&'static str),
    /// `${1}` expands to capture group 1.
    Template(&'static str),
}

fn compile(pattern: &str) -> Regex {
    // The patterns are constants of this file; a typo is a programming error caught by the
    // unit tests on first use, not a runtime condition.
    match Regex::new(pattern) {
        Ok(r) => r,
        Err(e) => panic!("normalisation pattern {pattern:?} does not compile: {e}"),
    }
}

fn rule(pattern: &str, needle: &'static str, replacement: Replacement) -> Rule {
    Rule {
        re: compile(pattern),
        needle,
        replacement,
    }
}

/// ASCII word boundary, JavaScript's `\b` without the `u` flag.
const B: &str = r"(?-u:\b)";

/// Rule 3 pattern. Alternation order is the original's; with the `_` that must follow, at most
/// one alternative can match at a position, so leftmost-first and backtracking agree.
pub(crate) fn stripe_pattern() -> String {
    format!(
        r"{B}(cus|sub|pi|pm|price|prod|inv|ch|re|txn|acct|evt|cs|si|seti|plink|whsec|sk|pk|rk)_[A-Za-z0-9]+"
    )
}
pub(crate) const JWT_PATTERN: &str = r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+";
pub(crate) fn ipv4_pattern() -> String {
    format!(r"{B}[0-9]{{1,3}}\.[0-9]{{1,3}}\.[0-9]{{1,3}}\.[0-9]{{1,3}}{B}")
}
pub(crate) fn url_pattern() -> String {
    format!(r"(https?://[^/{JS_WS}]+)(/[^{JS_WS}]*)")
}
pub(crate) const DOLLAR_PATTERN: &str = r"\$[0-9,]+(\.[0-9]{2})?";
pub(crate) fn collapse_pattern() -> String {
    format!(r"\*([{JS_WS}]*\*)+")
}

struct Rules {
    stripe: Rule,
    jwt: Rule,
    ipv4: Rule,
    url: Rule,
    dollar: Rule,
    collapse: Rule,
}

static RULES: LazyLock<Rules> = LazyLock::new(|| Rules {
    stripe: rule(&stripe_pattern(), "_", Replacement::Template("${1}_*")),
    jwt: rule(JWT_PATTERN, "eyJ", Replacement::Literal("JWT_*")),
    ipv4: rule(&ipv4_pattern(), ".", Replacement::Literal("*")),
    url: rule(&url_pattern(), "http", Replacement::Template("${1}/*")),
    dollar: rule(DOLLAR_PATTERN, "$", Replacement::Literal("$*")),
    collapse: rule(&collapse_pattern(), "*", Replacement::Literal("*")),
});

/// Normalises an error message so that messages differing only in volatile tokens (ids, times,
/// amounts, hosts' paths) compare equal. Never panics on any input.
pub fn normalize_message(msg: &str) -> String {
    // 1. Empty → "".
    if msg.is_empty() {
        return String::new();
    }
    let rules = &*RULES;
    let mut cur: Cow<'_, str> = Cow::Borrowed(msg);
    // 2. UUIDs.
    step(&mut cur, replace_uuids);
    // 3. Stripe-style prefixed ids.
    apply(&mut cur, &rules.stripe);
    // 4. JWTs.
    apply(&mut cur, &rules.jwt);
    // 5. ISO-8601 date-times.
    step(&mut cur, replace_iso_datetimes);
    // 6. Bare dates.
    step(&mut cur, replace_bare_dates);
    // 7. Unix timestamps (10–13 digits).
    step(&mut cur, |s| replace_class_runs(s, DIGIT, 10, 13));
    // 8. IPv4.
    apply(&mut cur, &rules.ipv4);
    // 9. URL paths: keep scheme://host.
    apply(&mut cur, &rules.url);
    // 10. Dollar amounts.
    apply(&mut cur, &rules.dollar);
    // 11. Long hex strings.
    step(&mut cur, |s| replace_class_runs(s, HEX, 32, usize::MAX));
    // 12. Remaining numbers of 5+ digits.
    step(&mut cur, |s| replace_class_runs(s, DIGIT, 5, usize::MAX));
    // 13. Runs of `*` separated only by whitespace collapse into one, then trim.
    apply(&mut cur, &rules.collapse);
    cur.trim_matches(is_js_whitespace).to_string()
}

/// Runs a scanner; `None` means "no match, text unchanged".
fn step(cur: &mut Cow<'_, str>, f: impl FnOnce(&str) -> Option<String>) {
    if let Some(next) = f(cur) {
        *cur = Cow::Owned(next);
    }
}

fn apply(cur: &mut Cow<'_, str>, r: &Rule) {
    if !cur.contains(r.needle) {
        return;
    }
    let next = match r.replacement {
        Replacement::Template(t) => r.re.replace_all(cur, t),
        Replacement::Literal(l) => r.re.replace_all(cur, NoExpand(l)),
    };
    if let Cow::Owned(s) = next {
        *cur = Cow::Owned(s);
    }
}

/// Builds the output of a scanner: the text between matches is copied, each match becomes `*`.
/// All match bounds are next to ASCII bytes, hence on char boundaries.
struct Splicer<'a> {
    src: &'a str,
    out: Option<String>,
    /// End of the last match (start of the text not yet copied).
    last: usize,
}

impl<'a> Splicer<'a> {
    fn new(src: &'a str) -> Self {
        Splicer {
            src,
            out: None,
            last: 0,
        }
    }
    fn star(&mut self, start: usize, end: usize) {
        let out = self
            .out
            .get_or_insert_with(|| String::with_capacity(self.src.len()));
        out.push_str(self.src.get(self.last..start).unwrap_or_default());
        out.push('*');
        self.last = end;
    }
    fn finish(self) -> Option<String> {
        let mut out = self.out?;
        out.push_str(self.src.get(self.last..).unwrap_or_default());
        Some(out)
    }
}

/// Byte classes for the word-run scanners: JavaScript's `\w` without the `u` flag (UTF-8 bytes of
/// non-ASCII characters are never word bytes, just as no non-ASCII UTF-16 unit is a word
/// character), and within it the ASCII digits and hex digits.
const WORD: u8 = 1;
const DIGIT: u8 = 2;
const HEX: u8 = 4;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        if c.is_ascii_alphanumeric() || c == b'_' {
            t[i] |= WORD;
        }
        if c.is_ascii_digit() {
            t[i] |= DIGIT;
        }
        if c.is_ascii_hexdigit() {
            t[i] |= HEX;
        }
        i += 1;
    }
    t
};

fn is_word(b: u8) -> bool {
    CLASS[b as usize] & WORD != 0
}

/// Whether `b` at `i` matches `shape`, where `d` is an ASCII digit, `h` an ASCII hex digit and any
/// other byte itself.
fn fits(b: &[u8], i: usize, shape: &[u8]) -> bool {
    match b.get(i..i.saturating_add(shape.len())) {
        Some(w) => w.iter().zip(shape).all(|(&c, &s)| match s {
            b'd' => c.is_ascii_digit(),
            b'h' => c.is_ascii_hexdigit(),
            _ => c == s,
        }),
        None => false,
    }
}

/// Replaces with `*` every match of a pattern whose matches start with a fixed-length head holding
/// the ASCII character `lit` at offset `at`. Each occurrence `p` of `lit`, left to right, gives the
/// candidate start `p - at`; `len_at(bytes, start)` says whether (and how long) a match starts
/// there. A candidate that starts inside the previous match is skipped, so matches are leftmost
/// and do not overlap, as with a global JavaScript regex.
fn scan_anchored(
    s: &str,
    lit: char,
    at: usize,
    len_at: impl Fn(&[u8], usize) -> Option<usize>,
) -> Option<String> {
    let b = s.as_bytes();
    let mut sp = Splicer::new(s);
    // Where to look for the next `lit`; always a char boundary (0, just after an ASCII byte, or
    // the end of a match).
    let mut from = 0;
    while let Some(off) = s.get(from..).and_then(|rest| rest.find(lit)) {
        let p = from + off;
        from = p + 1;
        let Some(start) = p.checked_sub(at) else {
            continue;
        };
        if start < sp.last {
            continue;
        }
        if let Some(len) = len_at(b, start) {
            sp.star(start, start + len);
            from = start + len;
        }
    }
    sp.finish()
}

/// Rule 2: `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}` (case-insensitive).
fn replace_uuids(s: &str) -> Option<String> {
    const SHAPE: &[u8; 36] = b"hhhhhhhh-hhhh-hhhh-hhhh-hhhhhhhhhhhh";
    scan_anchored(s, '-', 8, |b, i| fits(b, i, SHAPE).then_some(SHAPE.len()))
}

/// Rule 5: `\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?`. Both optional
/// groups are greedy and nothing follows them, so the first way that works is the longest: all
/// the fraction digits, then `Z`, or a sign with `dd:dd` or else `dddd`.
fn replace_iso_datetimes(s: &str) -> Option<String> {
    fn len_at(b: &[u8], i: usize) -> Option<usize> {
        const HEAD: &[u8; 19] = b"dddd-dd-ddTdd:dd:dd";
        if !fits(b, i, HEAD) {
            return None;
        }
        let mut j = i + HEAD.len();
        if fits(b, j, b".d") {
            j += 2;
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
        }
        match b.get(j) {
            Some(b'Z') => j += 1,
            Some(b'+' | b'-') => {
                if fits(b, j + 1, b"dd:dd") {
                    j += 6;
                } else if fits(b, j + 1, b"dddd") {
                    j += 5;
                }
            }
            _ => {}
        }
        Some(j - i)
    }
    scan_anchored(s, 'T', 10, len_at)
}

/// Rule 6: `\b\d{4}-\d{2}-\d{2}\b` (ASCII boundaries; a digit is a word character, so the
/// boundaries ask for a non-word character, or the text's end, on either side).
fn replace_bare_dates(s: &str) -> Option<String> {
    fn len_at(b: &[u8], i: usize) -> Option<usize> {
        const SHAPE: &[u8; 10] = b"dddd-dd-dd";
        let before_ok = i == 0 || b.get(i - 1).is_some_and(|&c| !is_word(c));
        let after_ok = b.get(i + SHAPE.len()).is_none_or(|&c| !is_word(c));
        (before_ok && after_ok && fits(b, i, SHAPE)).then_some(SHAPE.len())
    }
    scan_anchored(s, '-', 4, len_at)
}

/// Replaces with `*` every maximal run of ASCII word characters whose length is in `min..=max`
/// and whose bytes all have the [`CLASS`] bit `bit`. For `\b[X]{min,max}\b` with X a subset of
/// the word characters, these runs are exactly the regex's matches: a match must start where a run
/// starts and, as the character after it must not be a word character, end where that run ends.
///
/// Only every `min`-th byte is looked at until one has `bit`: a run of `min` or more bytes cannot
/// fit between two such samples. From a sample that has it, the word run around it is examined,
/// and sampling resumes `min` bytes after that run's end, so each run is seen at most once.
fn replace_class_runs(s: &str, bit: u8, min: usize, max: usize) -> Option<String> {
    let b = s.as_bytes();
    let step = min.max(1);
    let mut sp = Splicer::new(s);
    let mut p = step - 1;
    while let Some(&c) = b.get(p) {
        if CLASS[c as usize] & bit == 0 {
            p += step;
            continue;
        }
        let mut start = p;
        while start > 0 && is_word(b[start - 1]) {
            start -= 1;
        }
        let mut end = p + 1;
        while end < b.len() && is_word(b[end]) {
            end += 1;
        }
        let run = &b[start..end];
        if (min..=max).contains(&run.len()) && run.iter().all(|&c| CLASS[c as usize] & bit != 0) {
            sp.star(start, end);
        }
        p = end + step;
    }
    sp.finish()
}

#[cfg(test)]
#[path = "normalize_tests.rs"]
mod tests;
