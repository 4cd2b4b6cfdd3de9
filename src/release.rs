//! This program's release: its version, its architecture, how two versions compare, and its own
//! binary (bytes and SHA-256), which the manager serves to the computers it installs and
//! upgrades.
//!
//! The version is read at run time from a slot in the binary's read-only data, not folded in at
//! compile time: two builds that differ only in version are then one build and a copy whose
//! slot was rewritten (`tests/e2e/upgrade.rs` makes an older agent and a newer manager that
//! way), without compiling the crate twice. The slot is `PICKET-VERSION-SLOT:` followed by the
//! version and NUL padding; whatever it holds after a rewrite is checked like any input.

use std::sync::{Arc, OnceLock};

/// The bytes before the version in the slot.
pub const SLOT_MARKER: &[u8] = b"PICKET-VERSION-SLOT:";
const SLOT_LEN: usize = 64;

#[used]
static SLOT: [u8; SLOT_LEN] = slot(env!("CARGO_PKG_VERSION").as_bytes());

const fn slot(version: &[u8]) -> [u8; SLOT_LEN] {
    let mut out = [0u8; SLOT_LEN];
    let mut i = 0;
    while i < SLOT_MARKER.len() {
        out[i] = SLOT_MARKER[i];
        i += 1;
    }
    let mut j = 0;
    while j < version.len() && i + j < SLOT_LEN {
        out[i + j] = version[j];
        j += 1;
    }
    out
}

/// This binary's version (`0.1.0`), as `picket --version` prints it and agents report it.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        // Through `black_box`: the compiler may not assume the slot holds what it was built
        // with, so the bytes are read from the file's data, rewritten or not.
        let slot: &[u8; SLOT_LEN] = std::hint::black_box(&SLOT);
        let bytes: Vec<u8> = slot[SLOT_MARKER.len()..]
            .iter()
            .copied()
            .take_while(|&b| b != 0)
            .collect();
        match String::from_utf8(bytes) {
            Ok(text) if Version::parse(&text).is_some() => text,
            // A slot rewritten with nonsense: say what was built rather than garbage.
            _ => env!("CARGO_PKG_VERSION").to_string(),
        }
    })
}

/// The architecture agents and binaries are matched on (`x86_64`, `aarch64`).
pub fn arch() -> &'static str {
    std::env::consts::ARCH
}

/// `MAJOR.MINOR.PATCH` with an optional `-PRE`, ordered as semantic versions order them
/// (a pre-release before its release; pre-releases by their text).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    numbers: [u64; 3],
    /// `None` sorts after `Some`: a release is newer than its pre-releases.
    release: ReleaseRank,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ReleaseRank {
    Pre(Vec<Identifier>),
    Release,
}

/// A pre-release's dot-separated part: numbers compare as numbers and before words
/// (`rc.2` < `rc.10` < `rc.a`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Identifier {
    Number(u64),
    Word(String),
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) if !pre.is_empty() => (core, Some(pre)),
            Some(_) => return None,
            None => (text, None),
        };
        let mut numbers = [0u64; 3];
        let mut parts = core.split('.');
        for n in &mut numbers {
            let part = parts.next()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) || part.len() > 18 {
                return None;
            }
            *n = part.parse().ok()?;
        }
        if parts.next().is_some() || text.len() > 64 {
            return None;
        }
        let release = match pre {
            Some(pre) => {
                let mut identifiers = Vec::new();
                for part in pre.split('.') {
                    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_alphanumeric()) {
                        return None;
                    }
                    identifiers.push(match part.parse() {
                        Ok(n) if part.bytes().all(|b| b.is_ascii_digit()) => Identifier::Number(n),
                        _ => Identifier::Word(part.to_string()),
                    });
                }
                ReleaseRank::Pre(identifiers)
            }
            None => ReleaseRank::Release,
        };
        Some(Version { numbers, release })
    }
}

/// Whether `offered` is a newer version than `running`; `false` when either is not a version,
/// so nothing is upgraded on a guess.
pub fn is_newer(offered: &str, running: &str) -> bool {
    match (Version::parse(offered), Version::parse(running)) {
        (Some(offered), Some(running)) => offered > running,
        _ => false,
    }
}

/// The running binary, as the manager serves it.
#[derive(Debug)]
pub struct OwnBinary {
    pub bytes: Arc<[u8]>,
    /// SHA-256 of `bytes`.
    pub sha256: [u8; 32],
}

/// This process's binary, read once (at the first use) from `/proc/self/exe`, which stays this
/// process's file even if a package replaced it on disk. The error says why it cannot be read.
pub fn own_binary() -> Result<&'static OwnBinary, &'static str> {
    static BINARY: OnceLock<Result<OwnBinary, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            std::fs::read("/proc/self/exe")
                .map(|bytes| OwnBinary {
                    sha256: crate::secret::sha256(&bytes),
                    bytes: bytes.into(),
                })
                .map_err(|e| {
                    log::error!("cannot read this program's own binary to serve it: {e}");
                    e.to_string()
                })
        })
        .as_ref()
        .map_err(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_holds_the_crate_version() {
        assert_eq!(version(), env!("CARGO_PKG_VERSION"));
        assert!(SLOT.starts_with(SLOT_MARKER));
    }

    #[test]
    fn versions_order_as_semantic_versions() {
        assert!(is_newer("0.2.0", "0.1.0"));
        assert!(is_newer("0.10.0", "0.9.9"));
        assert!(is_newer("1.0.0", "1.0.0-rc.1"));
        assert!(is_newer("1.0.0-rc.2", "1.0.0-rc.1"));
        assert!(is_newer("1.0.0-rc.10", "1.0.0-rc.2"));
        assert!(is_newer("1.0.0-rc.a", "1.0.0-rc.10"));
        assert!(is_newer("1.0.0-rc.1.1", "1.0.0-rc.1"));
        assert!(!is_newer("0.1.0", "0.1.0"));
        assert!(!is_newer("0.1.0", "0.2.0"));
    }

    #[test]
    fn what_is_not_a_version_is_never_newer() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "a.b.c",
            "1.2.3-",
            "1.2.-3",
            "1.2.3-x y",
            "1.0.0-..",
            "1.0.0-a/b",
            "sim",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad:?}");
            assert!(!is_newer(bad, "0.0.1"), "{bad:?}");
            assert!(!is_newer("9.9.9", bad), "{bad:?}");
        }
    }
}
