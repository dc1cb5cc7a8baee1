//! The operator dashboard at `/dashboard`: one static page (HTML, a script, a stylesheet)
//! compiled into the binary. It holds no data itself: the browser logs in with
//! `POST /api/v1/auth/login` and follows the WebSocket channels like any other client, so the
//! page needs no session, no templating and no permission beyond what the API checks.
//!
//! Caching: the page is revalidated on every load (`no-cache` plus an `ETag`), and it names its
//! script and stylesheet with a content hash (`app.js?v=…`), so those are cached for a year and a
//! new build is picked up on the next load.

use std::sync::LazyLock;

use poem::{
    Request, Response, Route, get, handler,
    http::{HeaderValue, StatusCode, header},
};
use sha2::{Digest, Sha256};

const INDEX: &str = include_str!("static/index.html");
const APP_JS: &str = include_str!("static/app.js");
const STYLE_CSS: &str = include_str!("static/style.css");
const ICON_SVG: &str = include_str!("static/icon.svg");

/// The page's own content policy, replacing the API's deny-all one: its script, stylesheet and
/// connections to this origin only (`'self'` covers same-origin `ws:`/`wss:`), nothing inline,
/// no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

/// One served file: its body, type and validator.
struct Asset {
    body: String,
    content_type: &'static str,
    /// The first 16 hex digits of the body's SHA-256: the `ETag` and the `v=` of its URL.
    version: String,
}

impl Asset {
    fn new(body: String, content_type: &'static str) -> Self {
        let version = hex::encode(&Sha256::digest(body.as_bytes())[..8]);
        Self {
            body,
            content_type,
            version,
        }
    }
}

static APP: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(APP_JS.to_owned(), "text/javascript; charset=utf-8"));
static STYLE: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(STYLE_CSS.to_owned(), "text/css; charset=utf-8"));
static ICON: LazyLock<Asset> = LazyLock::new(|| Asset::new(ICON_SVG.to_owned(), "image/svg+xml"));
static PAGE: LazyLock<Asset> = LazyLock::new(|| {
    let html = INDEX
        .replace("{{app_version}}", &APP.version)
        .replace("{{style_version}}", &STYLE.version)
        .replace("{{icon_version}}", &ICON.version);
    Asset::new(html, "text/html; charset=utf-8")
});

/// `/dashboard` and its files; nest under `/dashboard`.
pub fn routes() -> Route {
    Route::new()
        .at("/", get(page))
        .at("/app.js", get(app_js))
        .at("/style.css", get(style_css))
        .at("/icon.svg", get(icon_svg))
}

#[handler]
fn page(req: &Request) -> Response {
    serve(req, &PAGE, false)
}

#[handler]
fn app_js(req: &Request) -> Response {
    serve(req, &APP, true)
}

#[handler]
fn style_css(req: &Request) -> Response {
    serve(req, &STYLE, true)
}

#[handler]
fn icon_svg(req: &Request) -> Response {
    serve(req, &ICON, true)
}

/// `versioned`: the file may be cached for good when asked for by its current `v=`; under any
/// other URL it is revalidated like the page, so an old link never pins an old copy.
fn serve(req: &Request, asset: &Asset, versioned: bool) -> Response {
    let etag = format!("\"{}\"", asset.version);
    let pinned = versioned
        && req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == format!("v={}", asset.version)));
    let cache_control = if pinned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let fresh = req
        .header(header::IF_NONE_MATCH)
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let builder = Response::builder()
        .header(header::CACHE_CONTROL, cache_control)
        .header(header::ETAG, etag)
        .header(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    if fresh {
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    builder
        .content_type(asset.content_type)
        .body(asset.body.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_its_files_by_current_version() {
        assert!(
            PAGE.body
                .contains(&format!("/dashboard/app.js?v={}", APP.version))
        );
        assert!(
            PAGE.body
                .contains(&format!("/dashboard/style.css?v={}", STYLE.version))
        );
        assert!(
            PAGE.body
                .contains(&format!("/dashboard/icon.svg?v={}", ICON.version))
        );
        assert!(
            !PAGE.body.contains("{{"),
            "a placeholder was left in the page"
        );
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        // The content policy forbids them; the browser would silently drop them.
        assert!(!INDEX.contains("<script>"));
        assert!(!INDEX.contains("<style"));
        assert!(!INDEX.contains(" style="));
        let handler = INDEX.match_indices(" on").any(|(at, _)| {
            let name: String = INDEX[at + 1..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            INDEX[at + 1 + name.len()..].starts_with('=')
        });
        assert!(!handler, "inline event handler attribute");
    }
}
