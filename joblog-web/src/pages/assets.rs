//! `/assets/:name`: the CSS and JS, embedded in the binary (no CDN, no network).

use poem::web::Path;
use poem::{Response, handler};

use crate::PageError;

/// `(name, content type, body)` of every embedded asset.
const ASSETS: [(&str, &str, &str); 2] = [
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/app.js"),
    ),
];

/// A short hash of the embedded assets, added to their URLs (`?v=…`) so that browsers
/// holding a cached copy fetch the new one after an upgrade.
pub(crate) fn version() -> String {
    // FNV-1a: stable across builds and platforms, unlike `DefaultHasher`.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (_, _, body) in ASSETS {
        for b in body.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{:08x}", h as u32)
}

/// `GET /assets/:name`: one asset, cacheable for an hour by the browser only (`private`:
/// it is served behind auth; its URL changes with it, `?v=`).
#[handler]
pub(crate) fn asset(Path(name): Path<String>) -> Result<Response, PageError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| PageError::not_found(format!("There is no asset {name:?}.")))?;
    Ok(Response::builder()
        .content_type(*content_type)
        .header("Cache-Control", "private, max-age=3600")
        .body(*body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn assets_stay_small() {
        let total: usize = super::ASSETS.iter().map(|(_, _, body)| body.len()).sum();
        assert!(total < 50 * 1024, "CSS and JS together are {total} bytes");
    }
}
