//! Markdown from issues, comments and plans rendered as HTML that cannot carry script: raw HTML
//! in the source is shown as text, link and image targets other than http(s), mailto and
//! relative paths are dropped, and every link opens without a referrer or an opener.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, html};

fn safe_url(url: &str) -> bool {
    let u = url.trim().to_ascii_lowercase();
    if u.starts_with("http://") || u.starts_with("https://") || u.starts_with("mailto:") {
        return true;
    }
    // Relative: no scheme before the first '/', '?' or '#'.
    let head = u.split(['/', '?', '#']).next().unwrap_or("");
    !head.contains(':') && !u.starts_with("//")
}

/// The target itself when it is safe, else `#`.
fn safe_dest(url: CowStr<'_>) -> CowStr<'_> {
    if safe_url(&url) {
        url
    } else {
        CowStr::from("#")
    }
}

pub fn render(source: &str) -> String {
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    opts.insert(Options::ENABLE_TASKLISTS);
    let events = Parser::new_ext(source, opts).map(|e| match e {
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_dest(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: safe_dest(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::with_capacity(source.len() * 3 / 2);
    html::push_html(&mut out, events);
    // Links from user text never get the page as opener or referrer.
    out.replace("<a href=", "<a rel=\"noopener noreferrer nofollow\" href=")
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn raw_html_and_script_are_text() {
        let h = render(
            "hi <script>alert(1)</script> <img src=x onerror=alert(1)>\n\n<iframe src=//evil></iframe>",
        );
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("<img"), "{h}");
        assert!(!h.contains("<iframe"), "{h}");
        assert!(h.contains("&lt;script&gt;"), "{h}");
    }

    #[test]
    fn dangerous_link_targets_are_dropped() {
        for src in [
            "[x](javascript:alert(1))",
            "[x](JaVaScRiPt:alert(1))",
            "[x]( data:text/html,<script>)",
            "[x](vbscript:msgbox)",
            "[x](//evil.example/x)",
        ] {
            let h = render(src);
            assert!(h.contains("href=\"#\""), "{src} → {h}");
        }
        let h =
            render("[ok](https://example.com/a?b=1) [rel](/issue/DISPATCH-1) [m](mailto:a@b.c)");
        assert!(h.contains("href=\"https://example.com/a?b=1\""), "{h}");
        assert!(h.contains("href=\"/issue/DISPATCH-1\""), "{h}");
        assert!(h.contains("rel=\"noopener noreferrer nofollow\""), "{h}");
    }

    #[test]
    fn images_with_bad_sources_lose_them() {
        let h = render("![x](javascript:alert(1))");
        assert!(!h.contains("javascript"), "{h}");
    }

    #[test]
    fn markdown_still_renders() {
        let h = render("# Plan\n\n1. **fix** `null`\n\n| a | b |\n|---|---|\n| 1 | 2 |");
        assert!(h.contains("<h1>Plan</h1>") && h.contains("<strong>fix</strong>"));
        assert!(h.contains("<code>null</code>") && h.contains("<table>"));
    }
}
