//! The web console's files, embedded in the binary from `assets/` (plain HTML, CSS and
//! JavaScript: no build step, nothing fetched from elsewhere), and the console's page paths.

use std::borrow::Cow;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../../assets/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("login.html", "text/html; charset=utf-8"),
    asset!("common.js", "text/javascript; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("login.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
];

/// The page every console path is answered with; its script draws the page the path names.
pub const APP_PAGE: &str = "index.html";
pub const LOGIN_PAGE: &str = "login.html";

/// For working on the console: with `PICKET_ASSETS_DIR` set, files are read from that folder at
/// each request, so a change shows on reload without a rebuild.
const DEV_DIR_VAR: &str = "PICKET_ASSETS_DIR";

/// The named file and its content type, or `None` for a name not in `assets/`.
pub fn get(name: &str) -> Option<(&'static str, Cow<'static, [u8]>)> {
    let asset = ASSETS.iter().find(|a| a.name == name)?;
    if let Some(dir) = std::env::var_os(DEV_DIR_VAR) {
        match std::fs::read(std::path::Path::new(&dir).join(asset.name)) {
            Ok(bytes) => return Some((asset.content_type, Cow::Owned(bytes))),
            Err(e) => {
                log::warn!("{DEV_DIR_VAR}: cannot read {name}: {e}; serving the built-in one")
            }
        }
    }
    Some((asset.content_type, Cow::Borrowed(asset.bytes)))
}

/// Whether `segments` is a console page: `/`, a list page, or one computer or policy.
pub fn is_page(segments: &[&str]) -> bool {
    match segments {
        [] | [""] => true,
        ["computers" | "policies" | "alerts" | "events" | "activation" | "account"] => true,
        ["computers" | "policies", id] => !id.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_others_are_not_found() {
        for a in ASSETS {
            let (_, bytes) = get(a.name).unwrap();
            assert!(!bytes.is_empty(), "{} is empty", a.name);
        }
        assert!(get("../Cargo.toml").is_none());
        assert!(get("secret").is_none());
    }

    #[test]
    fn pages_are_the_console_paths_only() {
        for page in [
            &[][..],
            &["computers"],
            &["computers", "7"],
            &["policies", "Base%20Policy"],
        ] {
            assert!(is_page(page), "{page:?}");
        }
        for other in [
            &["api"][..],
            &["computers", "7", "x"],
            &["metrics"],
            &["login"],
        ] {
            assert!(!is_page(other), "{other:?}");
        }
    }
}
