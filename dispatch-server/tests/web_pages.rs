//! The web UI's HTTP contract (no browser; `tests/web/` drives Chromium): pages need a session
//! and send people to the login form; the login form redirects only to local paths; every page
//! carries a strict Content-Security-Policy; cookie-authenticated writes need the CSRF header;
//! assets are immutable under a versioned path; portal pages refuse a wrong token and are never
//! cached.

mod support;

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use serde_json::json;
use support::{Server, post};

fn no_redirects() -> reqwest::Client {
    support::http();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `application/x-www-form-urlencoded`, as a browser posts the login form.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |v: &str| {
        v.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn login_cookie(s: &Server, next: &str) -> (String, String) {
    let r = no_redirects()
        .post(s.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("password", s.password.as_str()), ("next", next)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = r.headers()[LOCATION].to_str().unwrap().to_string();
    let cookie = r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    (cookie, location)
}

#[tokio::test]
async fn pages_send_people_to_login_and_back_only_to_local_paths() {
    let s = Server::builder().start();
    let c = no_redirects();
    for page in [
        "/",
        "/board",
        "/issue/DISPATCH-1",
        "/fleet",
        "/customers",
        "/customers/acme?filter=stale",
    ] {
        let r = c.get(s.url(page)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{page}");
        let loc = r.headers()[LOCATION].to_str().unwrap();
        assert!(
            loc.starts_with("/login?next=%2F") || loc.starts_with("/login?next=/"),
            "{page} → {loc}"
        );
    }
    let (_, loc) = login_cookie(&s, "/issue/DISPATCH-1").await;
    assert_eq!(loc, "/issue/DISPATCH-1");
    for evil in [
        "//evil.example/x",
        "https://evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let (_, loc) = login_cookie(&s, evil).await;
        assert_eq!(loc, "/", "{evil}");
    }
    let r = c
        .post(s.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("password", "wrong"), ("next", "/board")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(SET_COOKIE).is_none());
    assert!(r.text().await.unwrap().contains("invalid password"));
}

#[tokio::test]
async fn every_page_has_a_strict_csp_and_assets_are_immutable() {
    let s = Server::builder().start();
    let (cookie, _) = login_cookie(&s, "/").await;
    let c = no_redirects();
    let board = c
        .get(s.url("/board"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(board.status(), StatusCode::OK);
    let csp = board.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    let html = board.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script");
    assert!(!html.contains("style=\""), "no inline style");
    let css = html
        .split("href=\"")
        .find_map(|p| p.split('"').next().filter(|u| u.ends_with("/app.css")))
        .expect("the stylesheet link")
        .to_string();
    assert!(css.starts_with("/assets/"), "{css}");
    let r = c.get(s.url(&css)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(
        c.get(s.url("/assets/x/nothing.js"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let login = c.get(s.url("/login")).send().await.unwrap();
    assert!(login.headers().contains_key(CONTENT_SECURITY_POLICY));
}

#[tokio::test]
async fn cookie_writes_need_the_csrf_header_and_api_keys_do_not() {
    let s = Server::builder().start();
    let (_, issue) = post(&s, "/api/issues", json!({ "title": "csrf" })).await;
    let id = issue["id"].as_str().unwrap().to_string();
    let (cookie, _) = login_cookie(&s, "/").await;
    let c = no_redirects();
    let bare = c
        .patch(s.url(&format!("/api/issues/{id}")))
        .header("cookie", &cookie)
        .json(&json!({ "title": "changed by another site" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = bare.json().await.unwrap();
    assert_eq!(body["code"], "CSRF");
    let ok = c
        .patch(s.url(&format!("/api/issues/{id}")))
        .header("cookie", &cookie)
        .header("x-dispatch-csrf", "1")
        .json(&json!({ "title": "changed by the UI" }))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    // Reads by cookie need nothing more.
    let read = c
        .get(s.url(&format!("/api/issues/{id}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let (st, _) = support::patch(
        &s,
        &format!("/api/issues/{id}"),
        json!({ "title": "by key" }),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn portal_pages_refuse_wrong_tokens_and_are_never_cached() {
    let s = Server::builder().start();
    let (st, c) = post(&s, "/api/customers", json!({ "name": "Acme" })).await;
    assert_eq!(st, StatusCode::CREATED);
    let slug = c["customer"]["slug"].as_str().unwrap().to_string();
    let token = c["customer"]["portalToken"].as_str().unwrap().to_string();
    let h = no_redirects();
    let ok = h
        .get(s.url(&format!("/portal/{slug}?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(ok.headers()["referrer-policy"], "no-referrer");
    assert!(ok.text().await.unwrap().contains("Acme"));
    let css = h
        .get(s.url(&format!("/portal/{slug}/brand.css?token={token}")))
        .send()
        .await
        .unwrap();
    assert!(css.text().await.unwrap().starts_with(":root { --brand: #"));
    for bad in ["", "?token=", &format!("?token={}", "0".repeat(64))] {
        let r = h
            .get(s.url(&format!("/portal/{slug}{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert!(!r.text().await.unwrap().contains("Acme"));
    }
}

#[tokio::test]
async fn a_generated_braille_logo_reaches_the_header() {
    let dir = std::env::temp_dir().join(format!("dispatch-logo-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    // 40×20 RGBA: the left half dark, the right half transparent black (background).
    let image = dir.join("logo.png");
    {
        let file = std::fs::File::create(&image).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 40, 20);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        let data: Vec<u8> = (0..20)
            .flat_map(|_| {
                (0..40).flat_map(|x| {
                    if x < 20 {
                        [20, 20, 20, 255]
                    } else {
                        [0, 0, 0, 0]
                    }
                })
            })
            .collect();
        w.write_image_data(&data).unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dispatch"))
        .args(["generate-logo", "--width", "10", "--env-file"])
        .arg(dir.join(".env"))
        .arg(&image)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = text.lines().next().unwrap();
    assert_eq!(
        first, "⣿⣿⣿⣿⣿⠀⠀⠀⠀⠀",
        "dark half dots, transparent half blank"
    );
    let env = std::fs::read_to_string(dir.join(".env")).unwrap();
    assert!(env.starts_with("NEXT_PUBLIC_BRAND_BRAILLE=⣿⣿⣿⣿⣿"), "{env}");

    // The server started in that directory reads its .env: the header shows the art.
    let s = Server::builder().dir(dir.clone()).start();
    let login = no_redirects()
        .get(s.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login.contains("⣿⣿⣿⣿⣿⠀⠀⠀⠀⠀"), "{login}");

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_dispatch"))
        .args(["generate-logo"])
        .arg(dir.join(".env"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a PNG"));
}

async fn page(s: &Server, cookie: &str, path: &str) -> (StatusCode, String) {
    let r = no_redirects()
        .get(s.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let st = r.status();
    (st, r.text().await.unwrap())
}

/// The `content` of `<meta property|name="{name}" content="…">` (attributes as our templates
/// write them).
fn meta(html: &str, name: &str) -> Option<String> {
    let at = html
        .find(&format!("property=\"{name}\""))
        .or_else(|| html.find(&format!("name=\"{name}\"")))?;
    let rest = &html[at..];
    let c = rest.find("content=\"")? + 9;
    Some(
        rest[c..c + rest[c..].find('"')?]
            .replace("&amp;", "&")
            .replace("&#38;", "&"),
    )
}

#[tokio::test]
async fn customer_pages_show_health_filters_and_the_portal_link() {
    let s = Server::builder().start();
    let (cookie, _) = login_cookie(&s, "/").await;
    let (st, empty) = page(&s, &cookie, "/customers").await;
    assert_eq!(st, StatusCode::OK);
    assert!(empty.contains("No customers yet"), "{empty}");
    assert!(empty.contains("new-customer-form"));

    let (_, c) = post(
        &s,
        "/api/customers",
        json!({ "name": "Acme <Corp>", "brandColor": "#ff5500" }),
    )
    .await;
    let c = &c["customer"];
    let id = c["id"].as_str().unwrap();
    let token = c["portalToken"].as_str().unwrap();
    let (_, calm) = post(&s, "/api/customers", json!({ "name": "Zen" })).await;
    assert_eq!(calm["customer"]["slug"], "zen");
    for (title, prio) in [("Urgent one", "P1"), ("Answered", "P3")] {
        let (st, i) = post(
            &s,
            "/api/issues",
            json!({ "title": title, "priority": prio, "customerId": id }),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{i}");
        if title == "Answered" {
            let (st, _) = post(
                &s,
                "/api/comments",
                json!({ "issueId": i["id"], "body": "We are on it" }),
            )
            .await;
            assert!(st.is_success());
        }
    }

    let (st, list) = page(&s, &cookie, "/customers").await;
    assert_eq!(st, StatusCode::OK);
    // Markup in a name is text; the score carries its band colour (from core) as data.
    assert!(
        list.contains("Acme &#60;Corp&#62;") || list.contains("Acme &lt;Corp&gt;"),
        "{list}"
    );
    assert!(list.contains("data-fg=\"#22c55e\""), "{list}");
    assert!(list.contains(&format!("/portal/acme-corp?token={token}")));
    assert!(list.contains(">95<"), "one open P1 costs 5 points: {list}");
    assert!(list.contains("2 customers"), "{list}");
    assert!(!list.contains("style=\"") && !list.contains("<script>"));
    let acme_at = list.find("data-slug=\"acme-corp\"").unwrap();
    let zen_at = list.find("data-slug=\"zen\"").unwrap();
    assert!(acme_at < zen_at, "name order when nobody is stale");

    for path in ["/customers/acme-corp", &format!("/customers/{id}")] {
        let (st, html) = page(&s, &cookie, path).await;
        assert_eq!(st, StatusCode::OK, "{path}");
        assert!(
            html.contains("id=\"health-score\"") && html.contains(">95<"),
            "{html}"
        );
        assert!(html.contains("Urgent one") && html.contains("Answered"));
        assert!(html.contains("We are on it"), "activity feed: {html}");
        assert!(html.contains(&format!("/portal/acme-corp?token={token}\"")));
        assert!(html.contains("/customers.js"));
    }
    let (_, critical) = page(&s, &cookie, "/customers/acme-corp?filter=critical").await;
    assert!(
        critical.contains("Urgent one")
            && !critical.contains(">Answered<")
            && !critical.contains("Answered</td>"),
        "{critical}"
    );
    let (_, unresponded) = page(&s, &cookie, "/customers/acme-corp?filter=unresponded").await;
    assert!(unresponded.contains("Urgent one"));
    assert!(
        !unresponded.contains("data-identifier=\"DISPATCH-2\""),
        "{unresponded}"
    );
    let (_, stale) = page(&s, &cookie, "/customers/acme-corp?filter=stale").await;
    assert!(stale.contains("No stale issues."), "{stale}");
    let (st, _) = page(&s, &cookie, "/customers/acme-corp?filter=old").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = page(&s, &cookie, "/customers/nobody").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // The page's script is served like the others: versioned and immutable.
    let (_, html) = page(&s, &cookie, "/customers/acme-corp").await;
    let js = html
        .split("src=\"")
        .find_map(|p| p.split('"').next().filter(|u| u.ends_with("/customers.js")))
        .unwrap()
        .to_string();
    let r = no_redirects().get(s.url(&js)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert!(r.text().await.unwrap().contains("regenerate-token"));
}

fn png_size(b: &[u8]) -> (u32, u32) {
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
    (
        u32::from_be_bytes(b[16..20].try_into().unwrap()),
        u32::from_be_bytes(b[20..24].try_into().unwrap()),
    )
}

#[tokio::test]
async fn og_images_are_pngs_cached_by_etag_and_issue_cards_are_not_public() {
    let s = Server::builder().start();
    let h = no_redirects();
    let url =
        s.url("/api/og?title=Checkout%20fails&id=ACME-1&status=in_progress&priority=p1&labels=a,b");
    let r = h.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(
        r.headers()[CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("public")
    );
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(png_size(&r.bytes().await.unwrap()), (1200, 630));
    let again = h
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let other = h.get(s.url("/api/og?title=Another")).send().await.unwrap();
    assert_ne!(other.headers()["etag"].to_str().unwrap(), etag);
    // With nothing asked: the app's own card.
    let plain = h.get(s.url("/api/og")).send().await.unwrap();
    assert_eq!(png_size(&plain.bytes().await.unwrap()), (1200, 630));

    let (_, acme) = post(
        &s,
        "/api/customers",
        json!({ "name": "Acme", "brandColor": "#ff5500" }),
    )
    .await;
    let (_, globex) = post(&s, "/api/customers", json!({ "name": "Globex" })).await;
    let (_, issue) = post(
        &s,
        "/api/issues",
        json!({ "title": "Secret outage", "customerId": acme["customer"]["id"] }),
    )
    .await;
    let ident = issue["identifier"].as_str().unwrap();
    post(
        &s,
        &format!("/api/issues/{ident}/watchers"),
        json!({ "customerId": acme["customer"]["id"] }),
    )
    .await;
    let tok = |c: &serde_json::Value| c["customer"]["portalToken"].as_str().unwrap().to_string();
    let og = |q: String| {
        let h = h.clone();
        let u = s.url(&format!("/api/og/issue/{ident}{q}"));
        async move { h.get(u).send().await.unwrap() }
    };
    // Nobody, a wrong token, and another customer's link learn nothing (the original drew any
    // issue for anyone).
    assert_eq!(og(String::new()).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        og(format!("?slug=acme&token={}", "0".repeat(64)))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        og(format!("?slug=globex&token={}", tok(&globex)))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let r = og(format!("?slug=acme&token={}", tok(&acme))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(png_size(&r.bytes().await.unwrap()), (1200, 630));
    let keyed = support::http()
        .get(s.url(&format!("/api/og/issue/{ident}")))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), StatusCode::OK);
    let missing = support::http()
        .get(s.url("/api/og/issue/DISPATCH-999"))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // The portal's issue page points its preview at that image, with its own link.
    let html = h
        .get(s.url(&format!("/portal/acme/issue/{ident}?token={}", tok(&acme))))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let image = meta(&html, "og:image").expect("og:image");
    let path = format!("/api/og/issue/{ident}?slug=acme&token={}", tok(&acme));
    // Absolute, on DISPATCH_APP_URL (here the default, as the test server sets none).
    assert!(
        image.starts_with("http") && image.ends_with(&path),
        "{image}"
    );
    assert_eq!(
        meta(&html, "twitter:card").as_deref(),
        Some("summary_large_image")
    );
    assert_eq!(
        meta(&html, "og:title"),
        Some(format!("{ident}: Secret outage"))
    );
    assert_eq!(
        meta(&html, "og:description").as_deref(),
        Some("Normal priority issue - Backlog")
    );
    let r = h.get(s.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
