//! The UI's stylesheet and script, compiled into the binary and served
//! under a name carrying a hash of their content
//! (`/ui/static/style.3f2a9c1e.css`), with a year-long immutable cache:
//! a new build changes the name, so a browser never keeps a stale copy.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::Digest as _;

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("ui.js");

/// One asset: its hashed file name, content type and bytes.
struct Asset {
    name: String,
    content_type: &'static str,
    body: &'static str,
}

fn hashed(stem: &str, ext: &str, body: &str) -> String {
    let digest = sha2::Sha256::digest(body.as_bytes());
    format!("{stem}.{}.{ext}", &hex::encode(digest)[..12])
}

fn assets() -> &'static [Asset; 2] {
    static ASSETS: OnceLock<[Asset; 2]> = OnceLock::new();
    ASSETS.get_or_init(|| {
        [
            Asset {
                name: hashed("style", "css", STYLE),
                content_type: "text/css; charset=utf-8",
                body: STYLE,
            },
            Asset {
                name: hashed("ui", "js", SCRIPT),
                content_type: "text/javascript; charset=utf-8",
                body: SCRIPT,
            },
        ]
    })
}

/// The URL of the stylesheet.
pub(crate) fn style_url() -> String {
    format!("/ui/static/{}", assets()[0].name)
}

/// The URL of the script.
pub(crate) fn script_url() -> String {
    format!("/ui/static/{}", assets()[1].name)
}

/// `GET /ui/static/{file}`.
pub(crate) async fn handle_static(Path(file): Path<String>) -> Response {
    let Some(asset) = assets().iter().find(|a| a.name == file) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mut resp = asset.body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_names_carry_their_content_hash() {
        assert!(style_url().starts_with("/ui/static/style."));
        assert!(style_url().ends_with(".css"));
        assert_eq!(
            style_url(),
            format!("/ui/static/{}", hashed("style", "css", STYLE))
        );
        assert_ne!(hashed("style", "css", "a"), hashed("style", "css", "b"));
    }
}
