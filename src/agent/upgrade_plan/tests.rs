use super::*;

fn installed(version: &str) -> Binary {
    Binary {
        version: version.into(),
        path: "/usr/bin/picket".into(),
        staged: false,
    }
}

fn staged_bin(version: &str) -> Binary {
    Binary {
        version: version.into(),
        path: format!("/var/lib/picket-agent/upgrade/picket-{version}").into(),
        staged: true,
    }
}

fn offer(version: &str) -> UpgradeOffer {
    UpgradeOffer {
        version: version.into(),
        arch: release::arch().into(),
        size: 14 << 20,
        sha256: [1; 32],
    }
}

fn everything_exists(_: &Path) -> bool {
    true
}

#[test]
fn the_installed_binary_hands_over_to_a_newer_staged_one_only() {
    let state = staged(
        &UpgradeState::default(),
        installed("0.1.0"),
        staged_bin("0.2.0"),
    );
    let (_, start) = on_start(&state, &installed("0.1.0"), everything_exists);
    assert_eq!(start, Start::Exec(staged_bin("0.2.0").path));
    // A package brought 0.2.0 or newer: it runs, and the staged binaries are forgotten.
    for version in ["0.2.0", "0.3.0"] {
        let (next, start) = on_start(&state, &installed(version), everything_exists);
        assert_eq!(start, Start::Run, "{version}");
        assert_eq!(
            (next.current, next.previous, next.trial),
            (None, None, None)
        );
    }
    // The staged file is gone: the installed one runs.
    let (next, start) = on_start(&state, &installed("0.1.0"), |_| false);
    assert_eq!((start, next.current), (Start::Run, None));
}

#[test]
fn a_binary_on_trial_that_keeps_restarting_is_rolled_back_and_refused() {
    let mut state = staged(
        &UpgradeState::default(),
        installed("0.1.0"),
        staged_bin("0.2.0"),
    );
    for start in 1..=MAX_TRIAL_STARTS {
        let (next, action) = on_start(&state, &staged_bin("0.2.0"), everything_exists);
        assert_eq!(action, Start::Run, "start {start}");
        assert_eq!(next.trial.as_ref().map(|t| t.starts), Some(start));
        state = next;
    }
    let (next, action) = on_start(&state, &staged_bin("0.2.0"), everything_exists);
    assert_eq!(action, Start::Exec("/usr/bin/picket".into()));
    assert_eq!(next.current, None, "back to the installed binary");
    assert_eq!(next.trial, None);
    assert_eq!(next.refused, ["0.2.0"]);
    assert!(
        matches!(&next.report, Some(Outcome::Failed { from, to, .. }) if from == "0.1.0" && to == "0.2.0"),
        "{:?}",
        next.report
    );
    // The installed binary then runs, and declines the same offer.
    let (after, action) = on_start(&next, &installed("0.1.0"), everything_exists);
    assert_eq!(action, Start::Run);
    assert_eq!(
        consider(&after, &offer("0.2.0"), "0.1.0"),
        Err(Decline::Refused {
            offered: "0.2.0".into()
        })
    );
    assert_eq!(consider(&after, &offer("0.2.1"), "0.1.0"), Ok(()));
}

#[test]
fn a_rollback_to_a_staged_binary_keeps_running_it() {
    let first = staged(
        &UpgradeState::default(),
        installed("0.1.0"),
        staged_bin("0.2.0"),
    );
    let (first, _) = confirmed(&first, &staged_bin("0.2.0")).unwrap();
    let second = staged(&first, staged_bin("0.2.0"), staged_bin("0.3.0"));
    let (back, action) = roll_back(&second, "not online");
    assert_eq!(action, Start::Exec(staged_bin("0.2.0").path));
    assert_eq!(back.current, Some(staged_bin("0.2.0")));
    // Started again from the package, it hands over to 0.2.0, which is on no trial.
    let (_, action) = on_start(&back, &installed("0.1.0"), everything_exists);
    assert_eq!(action, Start::Exec(staged_bin("0.2.0").path));
    let (next, action) = on_start(&back, &staged_bin("0.2.0"), everything_exists);
    assert_eq!((action, next.trial), (Start::Run, None));
}

#[test]
fn a_session_confirms_the_trial_once() {
    let state = staged(
        &UpgradeState::default(),
        installed("0.1.0"),
        staged_bin("0.2.0"),
    );
    assert_eq!(
        state.report,
        Some(Outcome::Started {
            from: "0.1.0".into(),
            to: "0.2.0".into()
        })
    );
    assert_eq!(
        confirmed(&state, &installed("0.1.0")),
        None,
        "not the binary on trial"
    );
    let (next, outcome) = confirmed(&state, &staged_bin("0.2.0")).expect("on trial");
    assert_eq!(
        outcome,
        Outcome::Upgraded {
            from: "0.1.0".into(),
            to: "0.2.0".into()
        }
    );
    assert_eq!(next.trial, None);
    assert_eq!(next.current, Some(staged_bin("0.2.0")));
    assert_eq!(confirmed(&next, &staged_bin("0.2.0")), None);
    // Only the new binary is on trial, not the one that staged it and runs on until it hands
    // over.
    assert!(on_trial(&state, &staged_bin("0.2.0")));
    assert!(!on_trial(&state, &installed("0.1.0")));
    assert!(!on_trial(&next, &staged_bin("0.2.0")));
    // Rolling back with no trial changes nothing.
    assert_eq!(roll_back(&next, "x"), (next.clone(), Start::Run));
}

#[test]
fn offers_are_declined_for_the_reasons_named() {
    let none = UpgradeState::default();
    assert_eq!(consider(&none, &offer("0.2.0"), "0.1.0"), Ok(()));
    assert!(matches!(
        consider(&none, &offer("0.1.0"), "0.1.0"),
        Err(Decline::NotNewer { .. })
    ));
    let other = UpgradeOffer {
        arch: "vax".into(),
        ..offer("0.2.0")
    };
    assert!(matches!(
        consider(&none, &other, "0.1.0"),
        Err(Decline::OtherArch { .. })
    ));
    let huge = UpgradeOffer {
        size: MAX_BINARY + 1,
        ..offer("0.2.0")
    };
    assert_eq!(
        consider(&none, &huge, "0.1.0"),
        Err(Decline::TooLarge {
            size: MAX_BINARY + 1
        })
    );
    let trial = staged(&none, installed("0.1.0"), staged_bin("0.2.0"));
    assert_eq!(
        consider(&trial, &offer("0.3.0"), "0.2.0"),
        Err(Decline::OnTrial)
    );
}

#[test]
fn a_trial_lasts_three_intervals_and_at_least_ten_seconds() {
    let start = Instant::from_millis(1_000);
    let minute = Duration::from_secs(60);
    assert!(!trial_over(
        start,
        minute,
        start.saturating_add(minute * 3 - Duration::from_millis(1))
    ));
    assert!(trial_over(start, minute, start.saturating_add(minute * 3)));
    let second = Duration::from_secs(1);
    assert!(!trial_over(
        start,
        second,
        start.saturating_add(Duration::from_secs(9))
    ));
    assert!(trial_over(start, second, start.saturating_add(MIN_TRIAL)));
}
