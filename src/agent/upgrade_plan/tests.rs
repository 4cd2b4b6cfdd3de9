use super::*;

fn installed(version: &str) -> Binary {
    Binary {
        version: version.into(),
        path: "/usr/bin/picket".into(),
        staged: false,
        sha256: String::new(),
    }
}

fn staged_bin(version: &str) -> Binary {
    Binary {
        version: version.into(),
        path: format!("/var/lib/picket-agent/upgrade/picket-{version}").into(),
        staged: true,
        sha256: "ab".repeat(32),
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

fn intact(_: &Binary) -> bool {
    true
}

const TRIAL: Duration = Duration::from_secs(10);
const NOW: WallMs = WallMs(1_000_000);

#[test]
fn the_installed_binary_hands_over_to_a_newer_staged_one_only() {
    let state = staged(
        &UpgradeState::default(),
        installed("0.1.0"),
        staged_bin("0.2.0"),
    );
    let (_, start) = on_start(&state, &installed("0.1.0"), intact, false);
    assert_eq!(start, Start::Exec(staged_bin("0.2.0").path));
    // A package brought 0.2.0 or newer: it runs, and the staged binaries are forgotten.
    for version in ["0.2.0", "0.3.0"] {
        let (next, start) = on_start(&state, &installed(version), intact, false);
        assert_eq!(start, Start::Run, "{version}");
        assert_eq!(
            (next.current, next.previous, next.trial),
            (None, None, None)
        );
    }
    // Started by a rollback: no hand-over in this run, whatever the state says.
    let (next, start) = on_start(&state, &installed("0.1.0"), intact, true);
    assert_eq!((start, next), (Start::Run, state.clone()));
}

#[test]
fn a_staged_binary_gone_or_changed_is_refused_and_the_installed_one_runs() {
    let state = staged(
        &UpgradeState::default(),
        installed("0.1.0"),
        staged_bin("0.2.0"),
    );
    let (next, start) = on_start(&state, &installed("0.1.0"), |_| false, false);
    assert_eq!(start, Start::Run);
    assert_eq!((next.current, next.trial), (None, None));
    assert_eq!(next.refused, ["0.2.0"]);
    assert!(
        matches!(next.report, Some(Outcome::Failed { .. })),
        "{:?}",
        next.report
    );
}

#[test]
fn a_binary_on_trial_that_keeps_restarting_is_rolled_back_and_refused() {
    let mut state = staged(
        &UpgradeState::default(),
        installed("0.1.0"),
        staged_bin("0.2.0"),
    );
    for start in 1..=MAX_TRIAL_STARTS {
        let (next, action) = on_start(&state, &staged_bin("0.2.0"), intact, false);
        assert_eq!(action, Start::Run, "start {start}");
        assert_eq!(next.trial.as_ref().map(|t| t.starts), Some(start));
        state = next;
    }
    let (next, action) = on_start(&state, &staged_bin("0.2.0"), intact, false);
    assert_eq!(action, Start::Back("/usr/bin/picket".into()));
    assert_eq!(next.current, None, "back to the installed binary");
    assert_eq!(next.trial, None);
    assert_eq!(next.refused, ["0.2.0"]);
    assert!(
        matches!(&next.report, Some(Outcome::Failed { from, to, .. }) if from == "0.1.0" && to == "0.2.0"),
        "{:?}",
        next.report
    );
    // The installed binary then runs, and declines the same offer but not a newer one.
    let (after, action) = on_start(&next, &installed("0.1.0"), intact, true);
    assert_eq!(action, Start::Run);
    assert_eq!(
        consider(&after, &offer("0.2.0"), "0.1.0", NOW),
        Err(Decline::Refused {
            offered: "0.2.0".into()
        })
    );
    assert_eq!(consider(&after, &offer("0.2.1"), "0.1.0", NOW), Ok(()));
}

#[test]
fn a_trial_is_confirmed_only_when_the_binary_was_online_and_lasted_it() {
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
    // The binary that staged it is not on trial and decides nothing.
    assert!(!on_trial(&state, &installed("0.1.0")));
    assert_eq!(
        trial_ended(&state, &installed("0.1.0"), false, TRIAL, NOW),
        (state.clone(), Start::Run)
    );
    let (next, start) = trial_ended(&state, &staged_bin("0.2.0"), true, TRIAL, NOW);
    assert_eq!(start, Start::Run);
    assert_eq!(
        next.report,
        Some(Outcome::Upgraded {
            from: "0.1.0".into(),
            to: "0.2.0".into()
        })
    );
    assert_eq!(next.trial, None);
    assert_eq!(next.current, Some(staged_bin("0.2.0")));
    assert!(!on_trial(&next, &staged_bin("0.2.0")));
    // Never online: back, with the reason, and the version taken again only a day later (the
    // manager may have been away).
    let (back, start) = trial_ended(&state, &staged_bin("0.2.0"), false, TRIAL, NOW);
    assert_eq!(start, Start::Back("/usr/bin/picket".into()));
    assert!(
        matches!(&back.report, Some(Outcome::Failed { reason, .. }) if reason.contains("not online within 10 s")),
        "{:?}",
        back.report
    );
    assert!(back.refused.is_empty());
    let day = RETRY_OFFLINE_TRIAL.as_millis() as u64;
    assert_eq!(back.waiting, [("0.2.0".to_string(), NOW.0 + day)]);
    let (back, _) = on_start(&back, &installed("0.1.0"), intact, true);
    let later = |ms: u64| WallMs(NOW.0 + ms);
    assert!(matches!(
        consider(&back, &offer("0.2.0"), "0.1.0", later(day - 1)),
        Err(Decline::Waiting { .. })
    ));
    assert_eq!(
        consider(&back, &offer("0.2.0"), "0.1.0", later(day)),
        Ok(())
    );
}

#[test]
fn a_rollback_to_a_staged_binary_keeps_running_it() {
    let first = staged(
        &UpgradeState::default(),
        installed("0.1.0"),
        staged_bin("0.2.0"),
    );
    let (first, _) = trial_ended(&first, &staged_bin("0.2.0"), true, TRIAL, NOW);
    let second = staged(&first, staged_bin("0.2.0"), staged_bin("0.3.0"));
    let (back, action) = roll_back(&second, "not online");
    assert_eq!(action, Start::Back(staged_bin("0.2.0").path));
    assert_eq!(back.current, Some(staged_bin("0.2.0")));
    // Started again from the package, it hands over to 0.2.0, which is on no trial.
    let (_, action) = on_start(&back, &installed("0.1.0"), intact, false);
    assert_eq!(action, Start::Exec(staged_bin("0.2.0").path));
    let (next, action) = on_start(&back, &staged_bin("0.2.0"), intact, false);
    assert_eq!((action, next.trial.clone()), (Start::Run, None));
    // Rolling back with no trial changes nothing.
    assert_eq!(roll_back(&next, "x"), (next.clone(), Start::Run));
}

#[test]
fn a_binary_that_cannot_be_run_is_refused_and_a_failed_way_back_ends_the_process() {
    let state = staged(
        &UpgradeState::default(),
        installed("0.1.0"),
        staged_bin("0.2.0"),
    );
    // The hand-over to the new binary failed: refused, the old one runs on.
    let new = staged_bin("0.2.0").path;
    let (next, end) = exec_failed(&state, &installed("0.1.0"), &new, "ENOMEM");
    assert!(!end);
    assert_eq!((next.current, next.trial), (None, None));
    assert_eq!(next.refused, ["0.2.0"]);
    assert!(
        matches!(&next.report, Some(Outcome::Failed { reason, .. }) if reason.contains("ENOMEM")),
        "{:?}",
        next.report
    );
    // The binary on trial could not go back: it must not run on.
    let (back, _) = roll_back(&state, "not online");
    let (_, end) = exec_failed(
        &back,
        &staged_bin("0.2.0"),
        Path::new("/usr/bin/picket"),
        "x",
    );
    assert!(end);
}

#[test]
fn offers_are_declined_for_the_reasons_named() {
    let none = UpgradeState::default();
    assert_eq!(consider(&none, &offer("0.2.0"), "0.1.0", NOW), Ok(()));
    assert!(matches!(
        consider(&none, &offer("0.1.0"), "0.1.0", NOW),
        Err(Decline::NotNewer { .. })
    ));
    assert!(matches!(
        consider(&none, &offer("9.9.9/../../x"), "0.1.0", NOW),
        Err(Decline::NotNewer { .. })
    ));
    let other = UpgradeOffer {
        arch: "vax".into(),
        ..offer("0.2.0")
    };
    assert!(matches!(
        consider(&none, &other, "0.1.0", NOW),
        Err(Decline::OtherArch { .. })
    ));
    let huge = UpgradeOffer {
        size: MAX_BINARY + 1,
        ..offer("0.2.0")
    };
    assert_eq!(
        consider(&none, &huge, "0.1.0", NOW),
        Err(Decline::TooLarge {
            size: MAX_BINARY + 1
        })
    );
    let trial = staged(&none, installed("0.1.0"), staged_bin("0.2.0"));
    assert_eq!(
        consider(&trial, &offer("0.3.0"), "0.2.0", NOW),
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
