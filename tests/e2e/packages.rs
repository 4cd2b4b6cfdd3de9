//! The Debian packages: `packaging/deb/build.sh` (what `make deb` runs) on the test build,
//! extracted with `dpkg-deb -x` into a throwaway root: their files, modes, owners and control
//! fields, the units as `systemd-analyze verify` reads them, `picket --version` from the
//! package, and the maintainer scripts run against stand-ins for adduser and systemd.

use crate::support::BIN;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (.ci/run installs dpkg-dev and systemd)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds both packages from the test build into `out`; returns (manager's, agent's).
fn build(out: &Path) -> (PathBuf, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/deb/build.sh");
    // gzip at its fastest: xz takes half a minute on a debug build; the contents are the same.
    run(Command::new("sh")
        .arg(script)
        .arg(BIN)
        .arg(out)
        .env("DEB_COMPRESS", "gzip")
        .env("DEB_COMPRESS_LEVEL", "1"));
    let arch = text(&run(Command::new("dpkg").arg("--print-architecture")));
    let arch = arch.trim();
    let manager = out.join(format!("picket_{VERSION}_{arch}.deb"));
    let agent = out.join(format!("picket-agent_{VERSION}_{arch}.deb"));
    assert!(manager.exists() && agent.exists(), "{manager:?} {agent:?}");
    (manager, agent)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

fn field(deb: &Path, name: &str) -> String {
    text(&run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name)))
        .trim()
        .to_string()
}

#[test]
fn the_packages_hold_the_binary_the_units_and_private_data_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let (manager, agent) = build(&tmp.path().join("out"));
    let root = tmp.path().join("root");
    for deb in [&manager, &agent] {
        // Every entry root's: the owners a fresh install gets before postinst.
        let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(deb)));
        for line in listing.lines() {
            assert!(line.contains(" root/root "), "{deb:?}: {line}");
        }
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root));
        assert_eq!(field(deb, "Version"), VERSION);
    }
    assert_eq!(field(&manager, "Package"), "picket");
    assert_eq!(field(&agent, "Package"), "picket-agent");
    let depends = field(&manager, "Depends");
    assert!(
        depends.contains(&format!("picket-agent (= {VERSION})")),
        "{depends}"
    );
    let depends = field(&agent, "Depends");
    assert!(depends.starts_with("libc6 (>= 2."), "{depends}");

    let units = root.join("lib/systemd/system");
    for (path, wanted) in [
        ("usr/bin/picket", 0o755),
        ("lib/systemd/system/picket-manager.service", 0o644),
        ("lib/systemd/system/picket-agent.service", 0o644),
        ("var/lib/picket", 0o700),
        ("var/lib/picket-agent", 0o700),
        ("usr/share/doc/picket/copyright", 0o644),
        ("usr/share/doc/picket-agent/README.md", 0o644),
    ] {
        assert_eq!(mode(&root.join(path)), wanted, "{path}");
    }
    let version = run(Command::new(root.join("usr/bin/picket")).arg("--version"));
    assert_eq!(text(&version), format!("picket {VERSION}\n"));

    // systemd-analyze reads the units as systemd would: with the binary where the extracted
    // root has it, a unit it cannot parse or a key it does not know is a warning on stderr.
    let verify = tmp.path().join("verify");
    std::fs::create_dir(&verify).unwrap();
    let binary = root.join("usr/bin/picket");
    for unit in ["picket-manager.service", "picket-agent.service"] {
        let content = std::fs::read_to_string(units.join(unit)).unwrap();
        for line in ["Type=notify", "WatchdogSec=30s", "NoNewPrivileges=yes"] {
            assert!(content.lines().any(|l| l == line), "{unit}: no {line}");
        }
        let moved = content.replace("/usr/bin/picket", binary.to_str().unwrap());
        std::fs::write(verify.join(unit), moved).unwrap();
        let out = run(Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(verify.join(unit)));
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(warnings.trim().is_empty(), "{unit}: {warnings}");
    }
    let manager_unit = std::fs::read_to_string(units.join("picket-manager.service")).unwrap();
    for line in [
        "User=picket",
        "CapabilityBoundingSet=",
        "LimitNOFILE=131072",
    ] {
        assert!(
            manager_unit.lines().any(|l| l == line),
            "manager: no {line}"
        );
    }
    let agent_unit = std::fs::read_to_string(units.join("picket-agent.service")).unwrap();
    assert!(
        agent_unit
            .lines()
            .any(|l| l == "CapabilityBoundingSet=CAP_NET_ADMIN")
    );
}

/// Stand-ins that record how they were called in `$CALLS`; `getent` finds no user, and
/// `deb-systemd-helper was-enabled` answers `$WAS_ENABLED` (0: enabled, or a first install).
fn stand_ins(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for name in [
        "adduser",
        "chown",
        "systemctl",
        "deb-systemd-helper",
        "deb-systemd-invoke",
    ] {
        let script = format!(
            "#!/bin/sh\necho \"{name} $*\" >>\"$CALLS\"\n\
             case \"$*\" in *was-enabled*) exit \"${{WAS_ENABLED:-0}}\";; esac\n"
        );
        std::fs::write(dir.join(name), script).unwrap();
    }
    std::fs::write(dir.join("getent"), "#!/bin/sh\nexit 2\n").unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Runs a maintainer script of `deb` with `args`, installing into `root` (`DPKG_ROOT`, so no
/// systemd of this machine is touched); returns the stand-ins' calls and the script's stderr.
fn maintainer(
    deb: &Path,
    script: &str,
    args: &[&str],
    root: &Path,
    was_enabled: &str,
) -> (String, String) {
    let control = root.with_extension(format!("{script}.control"));
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control));
    assert_eq!(mode(&control.join(script)), 0o755, "{script}");
    run(Command::new("sh").arg("-n").arg(control.join(script)));
    let stubs = root.with_extension("bin");
    stand_ins(&stubs);
    let calls = root.with_extension("calls");
    let _ = std::fs::remove_file(&calls);
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", stubs.display());
    let out = run(Command::new("sh")
        .arg(control.join(script))
        .args(args)
        .env("PATH", path)
        .env("DPKG_ROOT", root)
        .env("CALLS", &calls)
        .env("WAS_ENABLED", was_enabled));
    let _ = std::fs::remove_dir_all(&control);
    (
        std::fs::read_to_string(&calls).unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn maintainer_scripts_make_the_user_and_enable_the_units_and_leave_a_foreign_systemd_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (manager, agent) = build(&tmp.path().join("out"));
    let root = tmp.path().join("root");
    for deb in [&manager, &agent] {
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root));
    }
    let data = root.join("var/lib/picket");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();

    // A first install: the user, the data dir's owner and mode, the unit enabled; nothing
    // started, since the systemd running here (if any) is not the target root's.
    let (calls, _) = maintainer(&manager, "postinst", &["configure"], &root, "0");
    let calls: Vec<&str> = calls.lines().collect();
    let adduser = "adduser --quiet --system --group --home /var/lib/picket --no-create-home \
                   --gecos Picket manager picket";
    assert!(calls.contains(&adduser), "{calls:?}");
    assert!(
        calls.contains(&format!("chown picket:picket {}", data.display()).as_str()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"deb-systemd-helper enable picket-manager.service"),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("deb-systemd-invoke") || c.starts_with("systemctl")),
        "{calls:?}"
    );
    assert_eq!(mode(&data), 0o700);

    // An upgrade after the administrator disabled the unit: it stays disabled.
    let (calls, _) = maintainer(&manager, "postinst", &["configure", "0.0.1"], &root, "1");
    assert!(
        calls.contains("update-state picket-manager.service"),
        "{calls}"
    );
    assert!(!calls.contains(" enable "), "{calls}");

    // The agent runs as root: no user to make.
    let (calls, _) = maintainer(&agent, "postinst", &["configure"], &root, "0");
    assert!(!calls.contains("adduser"), "{calls}");
    assert!(calls.contains("chown root:root"), "{calls}");
    assert!(
        calls.contains("deb-systemd-helper enable picket-agent.service"),
        "{calls}"
    );

    // Removal stops nothing here; a purge forgets the unit and keeps the data.
    let (calls, _) = maintainer(&manager, "prerm", &["remove"], &root, "0");
    assert_eq!(calls, "");
    let (calls, stderr) = maintainer(&manager, "postrm", &["purge"], &root, "0");
    assert!(
        calls.contains("deb-systemd-helper purge picket-manager.service"),
        "{calls}"
    );
    assert!(stderr.contains("/var/lib/picket was kept"), "{stderr}");
    assert!(data.exists());
}
