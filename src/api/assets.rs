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

/// A script: browsers run a module only when it comes with a JavaScript content type.
macro_rules! js {
    ($name:literal) => {
        asset!($name, "text/javascript; charset=utf-8")
    };
}

/// Every file the console may load, by its name under `/assets/`; nothing else is served. The
/// scripts are ES modules (`console/main.js` imports the rest), so a new module goes here too:
/// `every_file_in_assets_is_embedded` fails otherwise.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("login.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    js!("common.js"),
    js!("login.js"),
    js!("console/main.js"),
    js!("console/router.js"),
    js!("console/api.js"),
    js!("console/state.js"),
    js!("console/dom.js"),
    js!("console/forms.js"),
    js!("console/time.js"),
    js!("console/format.js"),
    js!("console/settings.js"),
    js!("console/poll.js"),
    js!("console/editor.js"),
    js!("console/channels.js"),
    js!("console/pages/dashboard.js"),
    js!("console/pages/computers.js"),
    js!("console/pages/computer.js"),
    js!("console/pages/policies.js"),
    js!("console/pages/policy.js"),
    js!("console/pages/alerts.js"),
    js!("console/pages/events.js"),
    js!("console/pages/activation.js"),
    js!("console/pages/notifications.js"),
    js!("console/pages/account.js"),
];

/// The page every console path is answered with; its script draws the page the path names.
pub const APP_PAGE: &str = "index.html";
pub const LOGIN_PAGE: &str = "login.html";

/// For working on the console: with `PICKET_ASSETS_DIR` set, files are read from that folder at
/// each request, so a change shows on reload without a rebuild.
const DEV_DIR_VAR: &str = "PICKET_ASSETS_DIR";

/// The named file and its content type, or `None` for a name not in [`ASSETS`]. `name` is the
/// path under `/assets/`, folders and all (`console/pages/policy.js`); it is only ever compared
/// with the list, never used to build a path of its own.
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
        [
            "computers" | "policies" | "alerts" | "events" | "activation" | "notifications"
            | "account",
        ] => true,
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
    fn nested_names_are_served_and_only_the_listed_ones() {
        let (content_type, _) = get("console/pages/policy.js").unwrap();
        assert!(
            content_type.starts_with("text/javascript"),
            "{content_type}"
        );
        for other in [
            "app.js",
            "console",
            "console/",
            "/console/main.js",
            "./console/main.js",
            "console//main.js",
            "console/pages/../main.js",
            "console/../../Cargo.toml",
        ] {
            assert!(get(other).is_none(), "{other}");
        }
    }

    /// A file in `assets/` missing from [`ASSETS`] would be a module the browser cannot load.
    /// (`assets/agent/` and `assets/systemd/` are not the console's: the install script, served
    /// by its own route, and the packages' units.)
    #[test]
    fn every_file_in_assets_is_embedded() {
        fn walk(dir: &std::path::Path, prefix: &str, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let name = format!("{prefix}{}", entry.file_name().to_str().unwrap());
                if name == "agent" || name == "systemd" {
                    continue;
                }
                if entry.file_type().unwrap().is_dir() {
                    walk(&entry.path(), &format!("{name}/"), found);
                } else {
                    found.push(name);
                }
            }
        }
        let mut found = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets"),
            "",
            &mut found,
        );
        let mut listed: Vec<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
        found.sort();
        listed.sort();
        assert_eq!(found, listed);
    }

    /// Each module's imports are relative paths (no import map, no bundler) to embedded files.
    #[test]
    fn every_import_names_an_embedded_module() {
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(a.bytes).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .rsplit_once(" from '")
                    .and_then(|(_, rest)| rest.strip_suffix("';"))
                    .unwrap_or_else(|| panic!("{}: cannot read {line}", a.name));
                assert!(
                    target.starts_with("./") || target.starts_with("../"),
                    "{}: {target} is not relative",
                    a.name
                );
                let mut path: Vec<&str> = a.name.split('/').collect();
                path.pop();
                for part in target.split('/') {
                    match part {
                        "." => {}
                        ".." => assert!(path.pop().is_some(), "{}: {target}", a.name),
                        _ => path.push(part),
                    }
                }
                let resolved = path.join("/");
                assert!(
                    ASSETS.iter().any(|b| b.name == resolved),
                    "{} imports {target}, which is not embedded",
                    a.name
                );
            }
        }
    }

    fn text_of(name: &str) -> &'static str {
        let asset = ASSETS.iter().find(|a| a.name == name).unwrap();
        std::str::from_utf8(asset.bytes).unwrap()
    }

    /// The routes of `router.js` as (a path each matches, the page function, the navigation
    /// link it lights), read from its lines `[/^\/computers\/(\d+)$/, pageComputer, 'computers'],`.
    fn router_routes() -> Vec<(String, String, String)> {
        let routes: Vec<(String, String, String)> = text_of("console/router.js")
            .lines()
            .filter_map(|l| l.trim().strip_prefix("[/^"))
            .map(|line| {
                let (pattern, rest) = line
                    .split_once("$/, ")
                    .unwrap_or_else(|| panic!("router.js: cannot read {line}"));
                let path = pattern.replace("\\/", "/").replace("(\\d+)", "7");
                assert!(
                    !path.contains(['\\', '(', '[', '*', '+', '?', '|']),
                    "router.js: {pattern} is more than a path with (\\d+) in it"
                );
                let (function, nav) = rest
                    .strip_suffix("'],")
                    .and_then(|r| r.split_once(", '"))
                    .unwrap_or_else(|| panic!("router.js: cannot read {line}"));
                (path, function.to_string(), nav.to_string())
            })
            .collect();
        assert!(routes.len() >= 5, "router.js: found only {routes:?}");
        routes
    }

    /// A page module that no route draws, a route the server does not answer with the console,
    /// or a navigation link to no route, is a page nobody reaches.
    #[test]
    fn every_page_module_is_routed_and_every_route_served() {
        let router = text_of("console/router.js");
        let routes = router_routes();
        for page in ASSETS
            .iter()
            .filter(|a| a.name.starts_with("console/pages/"))
        {
            let file = page.name.strip_prefix("console/").unwrap();
            let import = router
                .lines()
                .find(|l| l.ends_with(&format!(" from './{file}';")))
                .unwrap_or_else(|| panic!("router.js does not import {file}"));
            let function = import
                .strip_prefix("import { ")
                .and_then(|r| r.split_once(" }"))
                .map(|(f, _)| f)
                .unwrap_or_else(|| panic!("router.js: cannot read {import}"));
            assert!(
                routes.iter().any(|(_, f, _)| f == function),
                "router.js imports {function} from {file} but no route draws it"
            );
        }
        for (path, function, _) in &routes {
            let segments: Vec<&str> = path.split('/').skip(1).collect();
            assert!(
                is_page(&segments),
                "{path} ({function}) is routed in router.js but is_page does not serve it"
            );
        }
        let index = text_of("index.html");
        let navs: Vec<(&str, &str)> = index
            .lines()
            .filter_map(|l| {
                let href = l.split_once("href=\"")?.1.split('"').next()?;
                let nav = l.split_once("data-nav=\"")?.1.split('"').next()?;
                Some((href, nav))
            })
            .collect();
        assert!(navs.len() >= 5, "index.html: found only {navs:?}");
        for (href, nav) in navs {
            assert!(
                routes.iter().any(|(p, _, n)| p == href && n == nav),
                "index.html links {href} as {nav}, which no route of router.js is"
            );
        }
    }

    /// The route form offers the alert kinds the API knows.
    #[test]
    fn the_consoles_alert_kinds_are_the_catalogues() {
        let format = text_of("console/format.js");
        let listed: Vec<&str> = format
            .split_once("export const ALERT_KINDS = [")
            .and_then(|(_, rest)| rest.split_once("];"))
            .unwrap()
            .0
            .split(',')
            .map(|k| k.trim().trim_matches('\''))
            .filter(|k| !k.is_empty())
            .collect();
        let known: Vec<&str> = crate::alerts::AlertKind::ALL
            .iter()
            .map(|k| k.name())
            .collect();
        assert_eq!(listed, known);
    }

    #[test]
    fn pages_are_the_console_paths_only() {
        for page in [
            &[][..],
            &["computers"],
            &["computers", "7"],
            &["policies", "Base%20Policy"],
            &["notifications"],
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
