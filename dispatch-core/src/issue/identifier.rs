//! Human identifiers `PREFIX-n` and finding them in free text (PR titles, bodies, branch names).

/// `DISPATCH` + 42 → `DISPATCH-42`.
pub fn format_identifier(prefix: &str, number: i64) -> String {
    format!("{prefix}-{number}")
}

/// `DISPATCH-42` → (`DISPATCH`, 42). Case-insensitive on the prefix; `None` for anything else.
pub fn parse_identifier(s: &str) -> Option<(String, i64)> {
    let (prefix, num) = s.trim().rsplit_once('-')?;
    if prefix.is_empty()
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return None;
    }
    if num.is_empty() || num.len() > 18 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((prefix.to_ascii_uppercase(), num.parse().ok()?))
}

/// Every identifier of this workspace's `prefix` mentioned in `text`, in order of first mention,
/// without repeats. Only the workspace's own prefix counts, so "UTF-8" or "SHA-256" never match
/// (the original's `[A-Z]+-\d+` did). Matching is case-insensitive because branch names are
/// usually lower case (`fix/dispatch-42-null-check`); the prefix must not be glued to a preceding
/// letter or digit, nor the number to a following digit.
pub fn find_identifiers(text: &str, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if prefix.is_empty() {
        return out;
    }
    let hay = text.as_bytes();
    let needle = prefix.as_bytes();
    let mut i = 0;
    while i + needle.len() < hay.len() {
        let at_boundary = i == 0 || !hay[i - 1].is_ascii_alphanumeric();
        if at_boundary
            && hay[i..i + needle.len()].eq_ignore_ascii_case(needle)
            && hay[i + needle.len()] == b'-'
        {
            let start = i + needle.len() + 1;
            let mut end = start;
            while end < hay.len() && hay[end].is_ascii_digit() {
                end += 1;
            }
            if end > start && end - start <= 18 {
                if let Ok(n) = text[start..end].parse::<i64>() {
                    let id = format_identifier(&prefix.to_ascii_uppercase(), n);
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_own_prefix_in_title_body_and_branch() {
        let text = "fix(billing): null check [DISPATCH-42]\nSee UTF-8 and SHA-256, refs dispatch-7\nbranch auto-fix/dispatch-42";
        assert_eq!(
            find_identifiers(text, "DISPATCH"),
            vec!["DISPATCH-42", "DISPATCH-7"]
        );
    }

    #[test]
    fn ignores_glued_prefixes() {
        assert!(find_identifiers("XDISPATCH-4", "DISPATCH").is_empty());
        assert_eq!(find_identifiers("(ENG-12)", "ENG"), vec!["ENG-12"]);
        assert!(find_identifiers("ENG-", "ENG").is_empty());
    }

    #[test]
    fn parse_round_trips() {
        assert_eq!(parse_identifier("eng-12"), Some(("ENG".into(), 12)));
        assert_eq!(parse_identifier("ENG-x"), None);
        assert_eq!(parse_identifier("12"), None);
        assert_eq!(format_identifier("ENG", 12), "ENG-12");
    }
}
