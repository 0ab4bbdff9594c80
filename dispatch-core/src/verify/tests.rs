use super::*;
use chrono::TimeZone;

fn t(h: i64) -> Timestamp {
    chrono::Utc
        .with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
        + Duration::hours(h)
}

fn pr() -> MergedPr {
    MergedPr {
        number: 7,
        url: Some("https://github.com/o/r/pull/7".into()),
        title: Some("fix: null check [DISPATCH-1]".into()),
        body: None,
        head_branch: None,
        base_branch: Some("main".into()),
        merged_at: t(0),
        merge_sha: Some("abcdef0123456789".into()),
    }
}

#[test]
fn without_deploy_signal_monitoring_starts_at_merge_and_verifies_at_deadline() {
    let p = VerifyPolicy::default();
    let a = on_merge(IssueId::new(), &pr(), &p, t(0));
    assert_eq!(a.status, VerificationStatus::Monitoring);
    assert_eq!(a.deadline, Some(t(48)));
    assert!(on_deadline(&a, t(47)).is_none());
    let v = on_deadline(&a, t(48)).unwrap();
    assert_eq!(v.status, VerificationStatus::Verified);
    // Final states do not move again.
    assert!(on_deadline(&v, t(100)).is_none());
    assert!(on_recurrence(&v, t(49), 1, "x".into()).is_none());
}

#[test]
fn with_deploy_signal_waits_and_ignores_recurrence_before_deploy() {
    let p = VerifyPolicy {
        window: Duration::hours(48),
        wait_for_deploy: true,
    };
    let a = on_merge(IssueId::new(), &pr(), &p, t(0));
    assert_eq!(a.status, VerificationStatus::AwaitingDeploy);
    assert!(on_recurrence(&a, t(1), 5, "r".into()).is_none());
    assert!(on_deadline(&a, t(1000)).is_none());
    let m = on_deploy(&a, Some("feedbeef"), t(2), &p, t(2)).unwrap();
    assert_eq!(m.status, VerificationStatus::Monitoring);
    assert_eq!(m.deadline, Some(t(50)));
    assert_eq!(m.deployed_sha.as_deref(), Some("feedbeef"));
    assert!(
        on_deploy(&m, None, t(3), &p, t(3)).is_none(),
        "second deploy does not restart the window"
    );
    let f = on_recurrence(&m, t(10), 3, "came back".into()).unwrap();
    assert_eq!(f.status, VerificationStatus::Failed);
    assert_eq!(f.events_after_deploy, Some(3));
}

#[test]
fn close_gate_cases() {
    let p = VerifyPolicy::default();
    assert!(close_gate(false, None, t(0)).is_ok());
    let none = close_gate(true, None, t(0)).unwrap_err();
    assert_eq!(none.code, "FIX_VERIFICATION_REQUIRED");
    assert!(none.reason.contains("Link a PR"));
    let m = on_merge(IssueId::new(), &pr(), &p, t(0));
    let mon = close_gate(true, Some(&m), t(10)).unwrap_err();
    assert!(mon.reason.contains("~38 hours"), "{}", mon.reason);
    let v = on_deadline(&m, t(48)).unwrap();
    assert!(close_gate(true, Some(&v), t(48)).is_ok());
    let f = on_recurrence(&m, t(1), 1, "boom".into()).unwrap();
    assert!(
        close_gate(true, Some(&f), t(2))
            .unwrap_err()
            .reason
            .contains("boom")
    );
    let w = on_merge(
        IssueId::new(),
        &pr(),
        &VerifyPolicy {
            wait_for_deploy: true,
            ..p
        },
        t(0),
    );
    assert!(
        close_gate(true, Some(&w), t(2))
            .unwrap_err()
            .reason
            .contains("not deployed")
    );
}

#[test]
fn describe_reads_well() {
    let m = on_merge(IssueId::new(), &pr(), &VerifyPolicy::default(), t(0));
    assert_eq!(describe(&m, t(36)), "Deployed abcdef0, monitoring for ~12h");
}

#[test]
fn a_merge_time_from_the_future_starts_the_window_now_without_overflow() {
    let mut far = pr();
    far.merged_at = chrono::DateTime::<chrono::Utc>::MAX_UTC;
    let a = on_merge(IssueId::new(), &far, &VerifyPolicy::default(), t(5));
    assert_eq!(a.merged_at, t(5));
    assert_eq!(a.deployed_at, Some(t(5)));
    assert_eq!(a.deadline, Some(t(53)));
    // A past merge keeps its own time as the start of what counts as a recurrence.
    let a = on_merge(IssueId::new(), &pr(), &VerifyPolicy::default(), t(5));
    assert_eq!(a.deployed_at, Some(t(0)));
}

#[test]
fn a_merge_delivered_late_gets_its_whole_window_from_delivery() {
    // Merged at 0, delivered 72 h later: verifying it at the next sweep would close the issue
    // without ever having watched.
    let a = on_merge(IssueId::new(), &pr(), &VerifyPolicy::default(), t(72));
    assert_eq!(
        a.deployed_at,
        Some(t(0)),
        "recurrences count from the merge"
    );
    assert_eq!(a.deadline, Some(t(120)), "the window runs from delivery");
    assert!(on_deadline(&a, t(73)).is_none());
    // A late deploy signal the same way.
    let p = VerifyPolicy {
        window: Duration::hours(48),
        wait_for_deploy: true,
    };
    let w = on_merge(IssueId::new(), &pr(), &p, t(1));
    let m = on_deploy(&w, None, t(2), &p, t(60)).unwrap();
    assert_eq!(m.deployed_at, Some(t(2)));
    assert_eq!(m.deadline, Some(t(108)));
}

fn link(last_seen: Timestamp, events: u64) -> crate::ports::ErrorLink {
    crate::ports::ErrorLink {
        id: crate::ids::LinkId::new(),
        issue_id: IssueId::new(),
        source: "loki".into(),
        external_key: "k".into(),
        fingerprint: "f".into(),
        url: None,
        metadata: serde_json::Value::Null,
        event_count: events,
        first_seen_at: t(-100),
        last_seen_at: last_seen,
        cooldown_until: None,
    }
}

#[test]
fn recurrence_since_finds_a_sighting_inside_the_window_only() {
    let a = on_merge(IssueId::new(), &pr(), &VerifyPolicy::default(), t(0));
    assert_eq!(recurrence_since(&a, &[]), None);
    assert_eq!(
        recurrence_since(&a, &[link(t(-1), 4)]),
        None,
        "seen before the fix: the old error"
    );
    assert_eq!(
        recurrence_since(&a, &[link(t(-1), 4), link(t(10), 9), link(t(3), 2)]),
        Some((t(10), 9)),
        "the newest sighting in the window"
    );
    assert_eq!(
        recurrence_since(&a, &[link(t(48), 9)]),
        None,
        "at the deadline the fix held its whole window"
    );
    let v = on_deadline(&a, t(48)).unwrap();
    assert_eq!(
        recurrence_since(&v, &[link(t(10), 9)]),
        None,
        "a settled attempt is not judged again"
    );
}
