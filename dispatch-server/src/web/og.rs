//! Share-preview (Open Graph) images, 1200×630 PNG (spec §12.8):
//!
//! - `GET /api/og?title=&description=&id=&status=&priority=&labels=a,b&assignee=&color=`: a card
//!   drawn from the query alone (it shows only what the link says), public and cacheable.
//! - `GET /api/og/issue/{identifier}`: an issue's card, branded with its customer's colour. Unlike
//!   the original (which drew any issue for anyone who guessed an identifier), it needs a
//!   session or the API key, or a portal link's `slug` + `token` of a customer who watches the
//!   issue (what the portal pages put in their `og:image`); otherwise 401/403 as the portal.
//!
//! Drawn here, with no browser and no font fetched at run time: the embedded DejaVu Sans Mono Bold
//! rasterised by `fontdue` onto a dark grid, encoded by `png`. Rendered images are kept in memory
//! by the hash of what they show (which is also the ETag), so a link unfurled by many clients is
//! drawn once.

use crate::auth::{api_key_ok, session_ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::customers::{portal_auth, portal_private};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dispatch_core::customer::DEFAULT_BRAND_COLOR;
use dispatch_core::issue::{Priority, is_valid_hex_color};
use schemars::JsonSchema;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};

pub const WIDTH: usize = 1200;
pub const HEIGHT: usize = 630;

static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono-Bold.ttf");

static FONT: LazyLock<Option<fontdue::Font>> = LazyLock::new(|| {
    fontdue::Font::from_bytes(FONT_BYTES, fontdue::FontSettings::default())
        .map_err(|e| tracing::error!(error = e, "the embedded OG font does not load"))
        .ok()
});

/// What one card shows. Everything is plain text; nothing is interpreted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct OgCard {
    /// Small line above the title (an issue identifier, or the app's name).
    pub kicker: String,
    pub title: String,
    pub description: String,
    /// A status pill: name and colour.
    pub status: Option<(String, [u8; 3])>,
    /// A priority pill: label and colour.
    pub priority: Option<(String, [u8; 3])>,
    pub labels: Vec<String>,
    /// Bottom-left (customer, reporter, assignee).
    pub footer: String,
    /// Bottom-right (the app's name).
    pub brand: String,
    /// The accent colour (a customer's brand colour, or the app's green).
    pub accent: [u8; 3],
}

impl OgCard {
    fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!("{self:?}").as_bytes());
        hex::encode(&h.finalize()[..16])
    }
}

/// `#rrggbb` → RGB; anything else → `None`.
pub fn hex_rgb(c: &str) -> Option<[u8; 3]> {
    if !is_valid_hex_color(c) {
        return None;
    }
    let v = u32::from_str_radix(&c[1..], 16).ok()?;
    Some([(v >> 16) as u8, (v >> 8) as u8, v as u8])
}

/// The first `max` characters, with "…" when cut.
pub fn truncate(s: &str, max: usize) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Words into at most `lines` lines of at most `cols` characters; the last line ends in "…"
/// when text was left over. A word longer than a line is cut.
pub fn wrap(text: &str, cols: usize, lines: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut left_over = false;
    for word in text.split_whitespace() {
        let mut word: String = word.to_string();
        loop {
            let need = if cur.is_empty() {
                word.chars().count()
            } else {
                cur.chars().count() + 1 + word.chars().count()
            };
            if need <= cols {
                if !cur.is_empty() {
                    cur.push(' ');
                }
                cur.push_str(&word);
                break;
            }
            if cur.is_empty() {
                // Longer than a line: cut it.
                cur = word.chars().take(cols).collect();
                word = word.chars().skip(cols).collect();
            }
            out.push(std::mem::take(&mut cur));
            if out.len() == lines {
                left_over = true;
                break;
            }
            if word.is_empty() {
                break;
            }
        }
        if left_over {
            break;
        }
    }
    if !cur.is_empty() && out.len() < lines {
        out.push(cur);
    }
    if left_over && let Some(last) = out.last_mut() {
        let mut t: String = last.chars().take(cols.saturating_sub(1)).collect();
        t = t.trim_end().to_string();
        t.push('…');
        *last = t;
    }
    out
}

const BG: [u8; 3] = [0x0b, 0x0e, 0x11];
const GRID: [u8; 3] = [0x14, 0x19, 0x1f];
const TEXT: [u8; 3] = [0xe6, 0xed, 0xf3];
const DIM: [u8; 3] = [0x8b, 0x94, 0x9e];
pub const APP_GREEN: [u8; 3] = [0x7e, 0xe7, 0x87];

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        let mut px = Vec::with_capacity(WIDTH * HEIGHT * 3);
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                let c = if x % 40 == 0 || y % 40 == 0 { GRID } else { BG };
                px.extend_from_slice(&c);
            }
        }
        Canvas { px }
    }

    fn blend(&mut self, x: i64, y: i64, c: [u8; 3], alpha: u8) {
        if x < 0 || y < 0 || x >= WIDTH as i64 || y >= HEIGHT as i64 || alpha == 0 {
            return;
        }
        let i = (y as usize * WIDTH + x as usize) * 3;
        let a = u16::from(alpha);
        for (dst, src) in self.px[i..i + 3].iter_mut().zip(c) {
            *dst = ((u16::from(src) * a + u16::from(*dst) * (255 - a)) / 255) as u8;
        }
    }

    fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: [u8; 3], alpha: u8) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.blend(xx, yy, c, alpha);
            }
        }
    }

    /// A rectangle with round ends (a pill), outlined in `c` over a faint fill.
    fn pill(&mut self, x: i64, y: i64, w: i64, h: i64, c: [u8; 3]) {
        let r = h / 2;
        for yy in 0..h {
            for xx in 0..w {
                // Distance outside the rounded shape, for the two end caps.
                let cx = if xx < r {
                    r
                } else if xx >= w - r {
                    w - r - 1
                } else {
                    xx
                };
                let dx = (xx - cx) as f64;
                let dy = (yy - r) as f64 + 0.5;
                let d = (dx * dx + dy * dy).sqrt();
                let rf = r as f64;
                if d <= rf {
                    let edge = d > rf - 3.0;
                    self.blend(x + xx, y + yy, c, if edge { 230 } else { 40 });
                }
            }
        }
    }

    /// Draws `text` with its baseline at `y`; returns the x after it.
    fn text(
        &mut self,
        font: &fontdue::Font,
        text: &str,
        x: i64,
        y: i64,
        size: f32,
        c: [u8; 3],
    ) -> i64 {
        let mut pen = x as f32;
        for ch in text.chars() {
            let (m, bitmap) = font.rasterize(ch, size);
            let gx = pen.round() as i64 + i64::from(m.xmin);
            let gy = y - m.height as i64 - i64::from(m.ymin);
            for row in 0..m.height {
                for col in 0..m.width {
                    self.blend(
                        gx + col as i64,
                        gy + row as i64,
                        c,
                        bitmap[row * m.width + col],
                    );
                }
            }
            pen += m.advance_width;
        }
        pen.round() as i64
    }

    fn png(&self) -> Result<Vec<u8>, png::EncodingError> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, WIDTH as u32, HEIGHT as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::Fast);
            let mut w = enc.write_header()?;
            w.write_image_data(&self.px)?;
        }
        Ok(out)
    }
}

fn advance(font: &fontdue::Font, size: f32) -> f32 {
    font.metrics('M', size).advance_width.max(1.0)
}

/// The card as a 1200×630 PNG.
pub fn render(card: &OgCard) -> Result<Vec<u8>, String> {
    let font = FONT.as_ref().ok_or("the OG font did not load")?;
    let mut c = Canvas::new();
    let left = 72i64;
    let right = WIDTH as i64 - 72;
    // Accent: a bar on the left and a glow along the top.
    c.rect(0, 0, 14, HEIGHT as i64, card.accent, 255);
    for y in 0..120 {
        c.rect(
            14,
            y,
            WIDTH as i64,
            1,
            card.accent,
            (60 - y / 2).max(0) as u8,
        );
    }
    let mut y = 110i64;
    if !card.kicker.is_empty() {
        c.text(
            font,
            &truncate(&card.kicker, 40),
            left,
            y,
            34.0,
            card.accent,
        );
        y += 30;
    }
    let title_size = if card.title.chars().count() > 60 {
        56.0
    } else {
        66.0
    };
    let cols = ((right - left) as f32 / advance(font, title_size)) as usize;
    for line in wrap(&card.title, cols, 3) {
        y += (title_size * 1.2) as i64;
        c.text(font, &line, left, y, title_size, TEXT);
    }
    if !card.description.is_empty() {
        y += 24;
        let size = 30.0;
        let cols = ((right - left) as f32 / advance(font, size)) as usize;
        let room = ((500 - y) / 40).clamp(0, 3) as usize;
        for line in wrap(&card.description, cols, room) {
            y += 40;
            c.text(font, &line, left, y, size, DIM);
        }
    }
    // Pills: status, priority, labels.
    let mut x = left;
    let py = 496i64;
    let size = 26.0;
    let adv = advance(font, size);
    let mut pills: Vec<(String, [u8; 3])> = Vec::new();
    pills.extend(card.status.clone());
    pills.extend(card.priority.clone());
    pills.extend(card.labels.iter().take(4).map(|l| (truncate(l, 18), DIM)));
    for (text, color) in pills {
        let w = (text.chars().count() as f32 * adv) as i64 + 36;
        if x + w > right {
            break;
        }
        c.pill(x, py, w, 44, color);
        c.text(font, &text, x + 18, py + 31, size, color);
        x += w + 14;
    }
    let fy = HEIGHT as i64 - 36;
    if !card.footer.is_empty() {
        c.text(font, &truncate(&card.footer, 44), left, fy, 26.0, DIM);
    }
    if !card.brand.is_empty() {
        let brand = truncate(&card.brand, 24);
        let w = (brand.chars().count() as f32 * adv) as i64;
        c.text(font, &brand, right - w, fy, 26.0, card.accent);
    }
    c.png().map_err(|e| e.to_string())
}

const CACHE_MAX: usize = 128;

/// Rendered images by card hash, at most [`CACHE_MAX`] (emptied when full: a few MB at most),
/// and the drawing slots: at most two cards are drawn at once (a few tens of milliseconds of CPU
/// each, off the async workers); more wait their turn. One per app ([`AppState::og`]).
pub struct OgCache {
    images: Mutex<HashMap<String, Bytes>>,
    drawing: tokio::sync::Semaphore,
}

impl Default for OgCache {
    fn default() -> Self {
        OgCache {
            images: Mutex::new(HashMap::new()),
            drawing: tokio::sync::Semaphore::new(2),
        }
    }
}

impl OgCache {
    /// The PNG of `card` and its ETag, drawn once per distinct card.
    pub fn cached(&self, card: &OgCard) -> Result<(Bytes, String), String> {
        let key = card.key();
        if let Some(png) = self
            .images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok((png.clone(), key));
        }
        let png = Bytes::from(render(card)?);
        let mut cache = self.images.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key.clone(), png.clone());
        Ok((png, key))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.images.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

async fn png_response(
    og: &std::sync::Arc<OgCache>,
    card: OgCard,
    headers: &HeaderMap,
    cache_control: &'static str,
) -> ApiResult<Response> {
    let internal = |e: String| ApiError::from(dispatch_core::Error::internal(e));
    let (png, key) = {
        let _turn = og
            .drawing
            .acquire()
            .await
            .map_err(|e| internal(e.to_string()))?;
        let og = og.clone();
        tokio::task::spawn_blocking(move || og.cached(&card))
            .await
            .map_err(|e| internal(e.to_string()))?
            .map_err(internal)?
    };
    let etag = format!("\"{key}\"");
    let hit = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut r = if hit {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "image/png")], png).into_response()
    };
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    Ok(r)
}

/// The original's status pill colours, by the column's name.
fn status_color(name: &str) -> [u8; 3] {
    let n = name.to_ascii_lowercase().replace([' ', '-'], "_");
    match n.as_str() {
        "backlog" => [0x6b, 0x72, 0x80],
        "triage" => [0x8b, 0x5c, 0xf6],
        "todo" | "investigating" => [0xf5, 0x9e, 0x0b],
        "needs_review" => [0xea, 0xb3, 0x08],
        "in_progress" => [0x3b, 0x82, 0xf6],
        "in_review" => [0x10, 0xb9, 0x81],
        "done" => [0x22, 0xc5, 0x5e],
        "canceled" | "cancelled" => [0xef, 0x44, 0x44],
        _ => DIM,
    }
}

/// The issue card's priority label and colour (the original's Urgent/High/Normal/Low).
pub fn priority_pill(p: Priority) -> (String, [u8; 3]) {
    match p {
        Priority::P1 => ("! Urgent".into(), [0xef, 0x44, 0x44]),
        Priority::P2 => ("!! High".into(), [0xf9, 0x73, 0x16]),
        Priority::P3 => ("- Normal".into(), [0xea, 0xb3, 0x08]),
        Priority::P4 => ("... Low".into(), [0x22, 0xc5, 0x5e]),
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct GenericQuery {
    title: Option<String>,
    description: Option<String>,
    id: Option<String>,
    status: Option<String>,
    priority: Option<String>,
    labels: Option<String>,
    assignee: Option<String>,
    /// The accent colour, `#rrggbb` (ours: a portal's card in its customer's colour).
    color: Option<String>,
}

/// `GET /api/og`: a card from the query alone.
pub async fn generic(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<GenericQuery>,
) -> ApiResult<Response> {
    let brand = &s.config.brand;
    let is_issue = q.id.as_deref().is_some_and(|i| !i.trim().is_empty());
    let title = q
        .title
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or(&brand.app_name);
    let card = OgCard {
        kicker: q
            .id
            .as_deref()
            .map(|i| truncate(i, 32))
            .filter(|i| !i.is_empty())
            .unwrap_or_default(),
        title: truncate(title, if is_issue { 80 } else { 50 }),
        description: truncate(
            q.description
                .as_deref()
                .filter(|d| !d.trim().is_empty())
                .unwrap_or(if q.title.is_some() {
                    ""
                } else {
                    &brand.description
                }),
            160,
        ),
        status: q
            .status
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (truncate(&v.replace('_', " "), 20), status_color(v))),
        priority: q.priority.as_deref().and_then(|p| {
            let p: Priority =
                serde_json::from_value(serde_json::json!(p.trim().to_ascii_uppercase())).ok()?;
            Some((format!("{p:?}"), priority_pill(p).1))
        }),
        labels: q
            .labels
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(4)
            .map(str::to_string)
            .collect(),
        footer: q
            .assignee
            .as_deref()
            .filter(|a| !a.trim().is_empty())
            .map(|a| format!("assigned to {}", truncate(a, 30)))
            .unwrap_or_default(),
        brand: brand.app_name.clone(),
        accent: q.color.as_deref().and_then(hex_rgb).unwrap_or(APP_GREEN),
    };
    png_response(&s.og, card, &headers, "public, max-age=86400").await
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct IssueQuery {
    slug: Option<String>,
    token: Option<String>,
}

/// `GET /api/og/issue/{identifier}`: the issue's card, for the signed-in or for a portal link of
/// a customer who watches it.
pub async fn issue(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(crate::routes::IssueKey(identifier)): ApiPath<crate::routes::IssueKey>,
    ApiQuery(q): ApiQuery<IssueQuery>,
) -> ApiResult<Response> {
    let signed_in = api_key_ok(&s, &headers) || session_ok(&s, &headers);
    let (issue, customer, portal) = if let (false, Some(slug)) = (signed_in, q.slug.as_deref()) {
        let c = portal_auth(&s, addr, slug, q.token.as_deref()).await?;
        let (issue, _) =
            crate::routes::customers::portal_watched_issue(&s, &c, &identifier).await?;
        (issue, Some(c), true)
    } else if signed_in {
        let issue = s
            .dispatch
            .get_issue(crate::routes::issue_ref(&identifier)?)
            .await?;
        let customer = match issue.customer_id {
            Some(id) => s.dispatch.customer(id).await.ok(),
            None => None,
        };
        (issue, customer, false)
    } else {
        return Err(ApiError::unauthorized(
            "an issue's image needs a session, the API key, or the portal link's slug and token",
        ));
    };
    let cols = s.dispatch.columns_for_display().await?;
    let status = cols.iter().find(|c| c.id == issue.column_id);
    let reporter = crate::routes::customers::reporter_names(&s, std::slice::from_ref(&issue))
        .await?
        .into_values()
        .next();
    let accent = customer
        .as_ref()
        .map(|c| c.brand_color_or_default())
        .and_then(hex_rgb)
        .or_else(|| hex_rgb(DEFAULT_BRAND_COLOR))
        .unwrap_or(APP_GREEN);
    let footer = match (&customer, &reporter) {
        (Some(c), Some(r)) => format!("{} · reported by {r}", c.name),
        (Some(c), None) => c.name.clone(),
        (None, Some(r)) => format!("reported by {r}"),
        (None, None) => String::new(),
    };
    let card = OgCard {
        kicker: issue.identifier.clone(),
        title: truncate(&issue.title, 80),
        description: truncate(issue.description.as_deref().unwrap_or(""), 100),
        status: status.map(|c| {
            (
                truncate(&c.name, 20),
                hex_rgb(&c.color).unwrap_or_else(|| status_color(&c.name)),
            )
        }),
        priority: Some(priority_pill(issue.priority)),
        labels: Vec::new(),
        footer,
        brand: s.config.brand.app_name.clone(),
        accent,
    };
    let r = png_response(&s.og, card, &headers, "private, max-age=300").await?;
    Ok(if portal { portal_private(r) } else { r })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_words_and_marks_what_is_left_over() {
        assert_eq!(wrap("a bb ccc", 4, 3), vec!["a bb", "ccc"]);
        assert_eq!(wrap("one two three four", 9, 1), vec!["one two…"]);
        assert_eq!(wrap("abcdefghij", 4, 2), vec!["abcd", "efg…"]);
        assert!(wrap("", 10, 3).is_empty());
        assert_eq!(truncate("  a   b  ", 10), "a b");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn colours_parse() {
        assert_eq!(hex_rgb("#ff5500"), Some([0xff, 0x55, 0x00]));
        assert_eq!(hex_rgb("red"), None);
        assert_eq!(status_color("In Progress"), [0x3b, 0x82, 0xf6]);
    }

    #[test]
    fn renders_a_1200_by_630_png_and_caches_it() {
        let card = OgCard {
            kicker: "ACME-7".into(),
            title:
                "Checkout fails with <script>alert(1)</script> for every customer in the EU region"
                    .into(),
            description: "Since the last deploy ".repeat(10),
            status: Some(("In Progress".into(), status_color("in progress"))),
            priority: Some(priority_pill(Priority::P1)),
            labels: vec!["Loki".into(), "payments".into()],
            footer: "Acme · reported by Ana".into(),
            brand: "Dispatch".into(),
            accent: [0xff, 0x55, 0x00],
        };
        let og = OgCache::default();
        let (png, etag) = og.cached(&card).expect("render");
        assert_eq!(&png[1..4], b"PNG");
        let dec = png::Decoder::new(std::io::Cursor::new(png.to_vec()));
        let reader = dec.read_info().expect("a PNG");
        assert_eq!((reader.info().width, reader.info().height), (1200, 630));
        let (again, etag2) = og.cached(&card).expect("cached");
        assert_eq!(png.as_ptr(), again.as_ptr(), "drawn once");
        assert_eq!(etag, etag2);
        let other = OgCard {
            accent: [0, 0, 255],
            ..card
        };
        assert_ne!(og.cached(&other).expect("render").1, etag);
        assert_eq!(og.len(), 2);
        assert_eq!(OgCache::default().len(), 0, "each app has its own cache");
    }
}
