//! Unit tests for the spawn gates: each gate alone at its exact boundary, the order in which they
//! apply, Defer vs Deny, reason codes and the original's human strings (spec §5.4, §5.6, §5.7,
//! §13 item 1), force, manual triggers and `SpawnPolicy::thresholds_for`.

use super::*;
use crate::Timestamp;
use crate::run::BudgetBucket;
use chrono::{Duration, TimeZone, Utc};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn now() -> Timestamp {
    Utc.with_ymd_and_hms(2025, 3, 14, 12, 0, 0).unwrap()
}

/// Small, distinct limits so every boundary is cheap to reach and every scope is identifiable.
fn policy() -> SpawnPolicy {
    SpawnPolicy {
        kill_switch: false,
        cooldown: Duration::hours(24),
        min_event_count: 5,
        spawn_delay: Duration::minutes(5),
        immediate_sources: vec![
            "ci-deploy".into(),
            "migration".into(),
            "infrastructure".into(),
        ],
        max_concurrent_error: 3,
        max_concurrent_prd: 2,
        max_concurrent_global: 4,
        daily_budget_error: 10,
        daily_budget_prd: 6,
        daily_budget_global: 12,
        daily_cost_limit_usd: 50.0,
        concurrency_retry: Duration::minutes(1),
    }
}

fn snapshot(bucket: BudgetBucket, trigger: Trigger) -> GateSnapshot {
    GateSnapshot {
        bucket,
        trigger,
        force: false,
        active_error: 0,
        active_prd: 0,
        spawned_today_error: 0,
        spawned_today_prd: 0,
        cost_today_usd: 0.0,
    }
}

fn alert_trigger(
    source: &str,
    event_count: u64,
    first_seen_at: Timestamp,
    cooldown_until: Option<Timestamp>,
) -> Trigger {
    Trigger::Alert {
        source: source.to_string(),
        event_count,
        first_seen_at,
        cooldown_until,
    }
}

fn alert(
    source: &str,
    event_count: u64,
    first_seen_at: Timestamp,
    cooldown_until: Option<Timestamp>,
) -> GateSnapshot {
    snapshot(
        BudgetBucket::Error,
        alert_trigger(source, event_count, first_seen_at, cooldown_until),
    )
}

/// An error alert that passes cooldown, threshold and delay under `policy()`.
fn ready_alert() -> GateSnapshot {
    alert("consumer-chat", 5, now() - Duration::minutes(10), None)
}

fn manual(bucket: BudgetBucket) -> GateSnapshot {
    snapshot(bucket, Trigger::Manual)
}

/// Fill every counter past every limit of `policy()`.
fn everything_full(mut s: GateSnapshot) -> GateSnapshot {
    s.active_error = 3;
    s.active_prd = 2;
    s.spawned_today_error = 10;
    s.spawned_today_prd = 6;
    s.cost_today_usd = 1_000.0;
    s
}

fn deny(reason: GateReason) -> Decision {
    Decision::Deny { reason }
}

fn defer(until: Timestamp, reason: GateReason) -> Decision {
    Decision::Defer { until, reason }
}

fn concurrency(scope: LimitScope, limit: u32) -> Decision {
    defer(
        now() + Duration::minutes(1),
        GateReason::ConcurrencyLimit { scope, limit },
    )
}

fn budget(scope: LimitScope, limit: u32) -> Decision {
    deny(GateReason::DailyBudget { scope, limit })
}

fn reason_string(d: &Decision) -> String {
    d.reason().expect("expected a refusal").to_string()
}

// ---------------------------------------------------------------------------------------------
// SpawnPolicy::thresholds_for / is_immediate (§13: getSpawnThresholds)
// ---------------------------------------------------------------------------------------------

#[test]
fn thresholds_for_immediate_sources_are_one_event_no_delay() {
    let p = SpawnPolicy::default();
    for source in ["ci-deploy", "migration", "infrastructure"] {
        assert_eq!(
            p.thresholds_for(source),
            (1, Duration::zero()),
            "source {source:?}"
        );
    }
}

#[test]
fn thresholds_for_other_sources_are_five_events_five_minutes() {
    let p = SpawnPolicy::default();
    for source in ["consumer-chat", "builder-chat", "unknown", ""] {
        assert_eq!(
            p.thresholds_for(source),
            (5, Duration::minutes(5)),
            "source {source:?}"
        );
    }
}

#[test]
fn thresholds_for_matches_immediate_sources_case_insensitively_and_trimmed() {
    let p = SpawnPolicy::default();
    for source in [
        "CI-DEPLOY",
        "Migration",
        "  infrastructure ",
        "InFrAsTrUcTuRe",
    ] {
        assert!(p.is_immediate(source), "source {source:?}");
        assert_eq!(
            p.thresholds_for(source),
            (1, Duration::zero()),
            "source {source:?}"
        );
    }
    // Whole-name matches only.
    for source in ["ci-deploy-x", "ci", "deploy", "migrations"] {
        assert!(!p.is_immediate(source), "source {source:?}");
        assert_eq!(
            p.thresholds_for(source),
            (5, Duration::minutes(5)),
            "source {source:?}"
        );
    }
}

#[test]
fn thresholds_for_uses_the_policy_values_and_the_configured_source_list() {
    let p = SpawnPolicy {
        min_event_count: 7,
        spawn_delay: Duration::minutes(12),
        immediate_sources: vec!["deploy".into(), "infra".into()],
        ..SpawnPolicy::default()
    };
    assert_eq!(p.thresholds_for("deploy"), (1, Duration::zero()));
    assert_eq!(p.thresholds_for("INFRA"), (1, Duration::zero()));
    // The defaults are replaced, not extended.
    assert_eq!(p.thresholds_for("ci-deploy"), (7, Duration::minutes(12)));
    assert_eq!(
        p.thresholds_for("consumer-chat"),
        (7, Duration::minutes(12))
    );
}

#[test]
fn thresholds_for_never_needs_fewer_than_one_event() {
    let p = SpawnPolicy {
        min_event_count: 0,
        ..SpawnPolicy::default()
    };
    assert_eq!(p.thresholds_for("consumer-chat"), (1, Duration::minutes(5)));
}

#[test]
fn empty_immediate_list_makes_no_source_immediate() {
    let p = SpawnPolicy {
        immediate_sources: Vec::new(),
        ..SpawnPolicy::default()
    };
    assert!(!p.is_immediate("ci-deploy"));
    assert!(!p.is_immediate(""));
    assert_eq!(p.thresholds_for("ci-deploy"), (5, Duration::minutes(5)));
}

#[test]
fn default_policy_has_the_originals_defaults() {
    let p = SpawnPolicy::default();
    assert!(!p.kill_switch);
    assert_eq!(p.cooldown, Duration::hours(24));
    assert_eq!(p.min_event_count, 5);
    assert_eq!(p.spawn_delay, Duration::minutes(5));
    assert_eq!(
        p.immediate_sources,
        vec!["ci-deploy", "migration", "infrastructure"]
    );
    assert_eq!(
        (
            p.max_concurrent_error,
            p.max_concurrent_prd,
            p.max_concurrent_global
        ),
        (100, 100, 110)
    );
    assert_eq!(
        (
            p.daily_budget_error,
            p.daily_budget_prd,
            p.daily_budget_global
        ),
        (1000, 1000, 2000)
    );
    assert_eq!(p.daily_cost_limit_usd, 200.0);
}

#[test]
fn permissive_policy_allows_a_fresh_single_event_alert_and_huge_counters() {
    let p = SpawnPolicy::permissive();
    let mut s = alert("consumer-chat", 1, now(), None);
    s.active_error = 1_000_000;
    s.active_prd = 1_000_000;
    s.spawned_today_error = 1_000_000;
    s.spawned_today_prd = 1_000_000;
    s.cost_today_usd = 1e9;
    assert_eq!(decide(&p, &s, now()), Decision::Allow);
}

// ---------------------------------------------------------------------------------------------
// §13 item 1: the original's checkSpawnGate cases, with the default policy
// ---------------------------------------------------------------------------------------------

#[test]
fn original_ci_deploy_with_one_event_just_seen_is_allowed() {
    let s = alert("ci-deploy", 1, now(), None);
    assert_eq!(decide(&SpawnPolicy::default(), &s, now()), Decision::Allow);
}

#[test]
fn original_consumer_chat_with_one_event_is_below_threshold() {
    let s = alert("consumer-chat", 1, now() - Duration::minutes(10), None);
    let d = decide(&SpawnPolicy::default(), &s, now());
    assert_eq!(
        d,
        deny(GateReason::BelowEventThreshold {
            need: 5,
            have: 1,
            source: "consumer-chat".into()
        })
    );
    let text = reason_string(&d);
    assert!(text.contains("below_event_threshold"), "{text}");
    assert!(text.contains("need 5"), "{text}");
    assert!(text.contains("consumer-chat"), "{text}");
    assert_eq!(
        text,
        "below_event_threshold (need 5, have 1, source=consumer-chat)"
    );
}

#[test]
fn original_consumer_chat_with_five_events_seen_ten_minutes_ago_is_allowed() {
    let s = alert("consumer-chat", 5, now() - Duration::minutes(10), None);
    assert_eq!(decide(&SpawnPolicy::default(), &s, now()), Decision::Allow);
}

#[test]
fn original_builder_chat_with_ten_events_just_seen_waits_for_the_delay() {
    let s = alert("builder-chat", 10, now(), None);
    let d = decide(&SpawnPolicy::default(), &s, now());
    let until = now() + Duration::minutes(5);
    assert_eq!(
        d,
        defer(
            until,
            GateReason::SpawnDelay {
                until,
                minutes: 5,
                source: "builder-chat".into()
            }
        )
    );
    let text = reason_string(&d);
    assert!(text.contains("spawn_delay"), "{text}");
    assert!(text.contains("waiting 5m"), "{text}");
    assert_eq!(
        text,
        "spawn_delay (waiting 5m after first seen, source=builder-chat)"
    );
}

#[test]
fn original_kill_switch_reason_is_exactly_kill_switch() {
    let p = SpawnPolicy {
        kill_switch: true,
        ..SpawnPolicy::default()
    };
    let d = decide(&p, &alert("ci-deploy", 1, now(), None), now());
    assert_eq!(d, deny(GateReason::KillSwitch));
    assert_eq!(reason_string(&d), "kill_switch");
}

#[test]
fn original_future_cooldown_reason_is_exactly_cooldown() {
    let until = now() + Duration::hours(1);
    let d = decide(
        &SpawnPolicy::default(),
        &alert("ci-deploy", 1, now(), Some(until)),
        now(),
    );
    assert_eq!(d, deny(GateReason::Cooldown { until }));
    assert_eq!(reason_string(&d), "cooldown");
}

// ---------------------------------------------------------------------------------------------
// Each gate alone, at its exact boundary
// ---------------------------------------------------------------------------------------------

#[test]
fn baseline_ready_alert_and_manual_spawns_are_allowed() {
    assert_eq!(decide(&policy(), &ready_alert(), now()), Decision::Allow);
    assert_eq!(
        decide(&policy(), &manual(BudgetBucket::Error), now()),
        Decision::Allow
    );
    assert_eq!(
        decide(&policy(), &manual(BudgetBucket::Prd), now()),
        Decision::Allow
    );
}

#[test]
fn kill_switch_denies_alerts_and_manual_spawns_in_both_buckets() {
    let p = SpawnPolicy {
        kill_switch: true,
        ..policy()
    };
    for s in [
        ready_alert(),
        manual(BudgetBucket::Error),
        manual(BudgetBucket::Prd),
    ] {
        assert_eq!(decide(&p, &s, now()), deny(GateReason::KillSwitch), "{s:?}");
    }
}

#[test]
fn cooldown_one_second_in_the_future_denies() {
    let until = now() + Duration::seconds(1);
    let s = alert(
        "consumer-chat",
        5,
        now() - Duration::minutes(10),
        Some(until),
    );
    assert_eq!(
        decide(&policy(), &s, now()),
        deny(GateReason::Cooldown { until })
    );
}

#[test]
fn cooldown_ending_exactly_now_allows() {
    let s = alert(
        "consumer-chat",
        5,
        now() - Duration::minutes(10),
        Some(now()),
    );
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);
}

#[test]
fn expired_cooldown_allows() {
    let s = alert(
        "consumer-chat",
        5,
        now() - Duration::minutes(10),
        Some(now() - Duration::hours(3)),
    );
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);
}

#[test]
fn cooldown_applies_to_immediate_sources_too() {
    let until = now() + Duration::hours(23);
    let s = alert("migration", 1, now(), Some(until));
    assert_eq!(
        decide(&policy(), &s, now()),
        deny(GateReason::Cooldown { until })
    );
}

#[test]
fn threshold_one_below_denies_and_exactly_at_allows() {
    let first = now() - Duration::minutes(10);
    assert_eq!(
        decide(&policy(), &alert("consumer-chat", 4, first, None), now()),
        deny(GateReason::BelowEventThreshold {
            need: 5,
            have: 4,
            source: "consumer-chat".into()
        })
    );
    assert_eq!(
        decide(&policy(), &alert("consumer-chat", 5, first, None), now()),
        Decision::Allow
    );
    assert_eq!(
        decide(&policy(), &alert("consumer-chat", 6, first, None), now()),
        Decision::Allow
    );
}

#[test]
fn threshold_follows_min_event_count() {
    let p = SpawnPolicy {
        min_event_count: 3,
        ..policy()
    };
    let first = now() - Duration::minutes(10);
    assert_eq!(
        decide(&p, &alert("x", 2, first, None), now()),
        deny(GateReason::BelowEventThreshold {
            need: 3,
            have: 2,
            source: "x".into()
        })
    );
    assert_eq!(
        decide(&p, &alert("x", 3, first, None), now()),
        Decision::Allow
    );
}

#[test]
fn immediate_source_needs_one_event() {
    assert_eq!(
        decide(&policy(), &alert("infrastructure", 0, now(), None), now()),
        deny(GateReason::BelowEventThreshold {
            need: 1,
            have: 0,
            source: "infrastructure".into()
        })
    );
    assert_eq!(
        decide(&policy(), &alert("infrastructure", 1, now(), None), now()),
        Decision::Allow
    );
}

#[test]
fn immediate_source_matches_case_insensitively_in_decide() {
    // One event, seen just now: only an immediate source passes both threshold and delay.
    assert_eq!(
        decide(&policy(), &alert("CI-Deploy", 1, now(), None), now()),
        Decision::Allow
    );
    assert_eq!(
        decide(&policy(), &alert("MIGRATION", 1, now(), None), now()),
        Decision::Allow
    );
    // The reason keeps the source as given.
    assert_eq!(
        decide(&policy(), &alert("Consumer-Chat", 1, now(), None), now()),
        deny(GateReason::BelowEventThreshold {
            need: 5,
            have: 1,
            source: "Consumer-Chat".into()
        })
    );
}

#[test]
fn delay_one_second_short_defers_until_first_seen_plus_delay() {
    let first = now() - Duration::minutes(5) + Duration::seconds(1);
    let until = first + Duration::minutes(5);
    assert_eq!(until, now() + Duration::seconds(1));
    assert_eq!(
        decide(&policy(), &alert("consumer-chat", 5, first, None), now()),
        defer(
            until,
            GateReason::SpawnDelay {
                until,
                minutes: 5,
                source: "consumer-chat".into()
            }
        )
    );
}

#[test]
fn delay_exactly_elapsed_allows() {
    let first = now() - Duration::minutes(5);
    assert_eq!(
        decide(&policy(), &alert("consumer-chat", 5, first, None), now()),
        Decision::Allow
    );
}

#[test]
fn delay_reports_the_configured_minutes() {
    let p = SpawnPolicy {
        spawn_delay: Duration::minutes(15),
        ..policy()
    };
    let first = now() - Duration::minutes(2);
    let until = first + Duration::minutes(15);
    let d = decide(&p, &alert("builder-chat", 9, first, None), now());
    assert_eq!(
        d,
        defer(
            until,
            GateReason::SpawnDelay {
                until,
                minutes: 15,
                source: "builder-chat".into()
            }
        )
    );
    assert_eq!(
        reason_string(&d),
        "spawn_delay (waiting 15m after first seen, source=builder-chat)"
    );
}

#[test]
fn immediate_source_has_no_delay() {
    assert_eq!(
        decide(&policy(), &alert("ci-deploy", 1, now(), None), now()),
        Decision::Allow
    );
}

#[test]
fn zero_delay_never_defers_even_if_first_seen_is_ahead_of_now() {
    // Clock skew: the first sighting is stamped a little after `now`. With no delay to wait for,
    // there is nothing to defer ("waiting 0m" would be nonsense).
    let ahead = now() + Duration::seconds(30);
    assert_eq!(
        decide(&policy(), &alert("ci-deploy", 1, ahead, None), now()),
        Decision::Allow
    );
    let p = SpawnPolicy {
        spawn_delay: Duration::zero(),
        ..policy()
    };
    assert_eq!(
        decide(&p, &alert("consumer-chat", 5, ahead, None), now()),
        Decision::Allow
    );
}

#[test]
fn error_concurrency_one_below_allows_and_at_limit_defers() {
    let mut s = ready_alert();
    s.active_error = 2;
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);
    s.active_error = 3;
    assert_eq!(
        decide(&policy(), &s, now()),
        concurrency(LimitScope::Error, 3)
    );
    s.active_error = 50;
    assert_eq!(
        decide(&policy(), &s, now()),
        concurrency(LimitScope::Error, 3)
    );
}

#[test]
fn prd_concurrency_one_below_allows_and_at_limit_defers() {
    let mut s = manual(BudgetBucket::Prd);
    s.active_prd = 1;
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);
    s.active_prd = 2;
    assert_eq!(
        decide(&policy(), &s, now()),
        concurrency(LimitScope::Prd, 2)
    );
}

#[test]
fn global_concurrency_one_below_allows_and_at_limit_defers() {
    // Error bucket: 2 error (under 3) + 1 prd (under 2) = 3 < 4.
    let mut s = ready_alert();
    s.active_error = 2;
    s.active_prd = 1;
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);
    // 2 + 2 = 4: the error bucket is under its own limit, the global one is reached.
    s.active_prd = 2;
    assert_eq!(
        decide(&policy(), &s, now()),
        concurrency(LimitScope::Global, 4)
    );

    // Prd bucket: 3 error + 0 prd = 3 < 4, then 3 + 1 = 4.
    let mut s = manual(BudgetBucket::Prd);
    s.active_error = 3;
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);
    s.active_prd = 1;
    assert_eq!(
        decide(&policy(), &s, now()),
        concurrency(LimitScope::Global, 4)
    );
}

#[test]
fn concurrency_defer_uses_the_configured_retry() {
    let p = SpawnPolicy {
        concurrency_retry: Duration::seconds(30),
        ..policy()
    };
    let mut s = ready_alert();
    s.active_error = 3;
    assert_eq!(
        decide(&p, &s, now()),
        defer(
            now() + Duration::seconds(30),
            GateReason::ConcurrencyLimit {
                scope: LimitScope::Error,
                limit: 3
            }
        )
    );
    s.active_error = 0;
    s.active_prd = 2;
    s.bucket = BudgetBucket::Prd;
    s.trigger = Trigger::Manual;
    assert_eq!(
        decide(&p, &s, now()),
        defer(
            now() + Duration::seconds(30),
            GateReason::ConcurrencyLimit {
                scope: LimitScope::Prd,
                limit: 2
            }
        )
    );
}

#[test]
fn concurrency_buckets_are_counted_separately() {
    // The prd bucket is full, but an error spawn only looks at error runs (and the global total).
    let mut s = ready_alert();
    s.active_prd = 2;
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);

    // The error bucket is full, but a prd spawn only looks at prd runs (and the global total).
    let mut s = manual(BudgetBucket::Prd);
    s.active_error = 3;
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);
}

#[test]
fn error_budget_one_below_allows_and_at_limit_denies() {
    let mut s = ready_alert();
    s.spawned_today_error = 9;
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);
    s.spawned_today_error = 10;
    assert_eq!(decide(&policy(), &s, now()), budget(LimitScope::Error, 10));
}

#[test]
fn prd_budget_one_below_allows_and_at_limit_denies() {
    let mut s = manual(BudgetBucket::Prd);
    s.spawned_today_prd = 5;
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);
    s.spawned_today_prd = 6;
    assert_eq!(decide(&policy(), &s, now()), budget(LimitScope::Prd, 6));
}

#[test]
fn global_budget_one_below_allows_and_at_limit_denies() {
    // Error bucket: 9 (under 10) + 2 (under 6) = 11 < 12, then 9 + 3 = 12.
    let mut s = ready_alert();
    s.spawned_today_error = 9;
    s.spawned_today_prd = 2;
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);
    s.spawned_today_prd = 3;
    assert_eq!(decide(&policy(), &s, now()), budget(LimitScope::Global, 12));

    // Prd bucket: 7 + 4 = 11, then 7 + 5 = 12 (prd still under its 6).
    let mut s = manual(BudgetBucket::Prd);
    s.spawned_today_error = 7;
    s.spawned_today_prd = 4;
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);
    s.spawned_today_prd = 5;
    assert_eq!(decide(&policy(), &s, now()), budget(LimitScope::Global, 12));
}

#[test]
fn budget_buckets_are_counted_separately() {
    let mut s = ready_alert();
    s.spawned_today_prd = 6; // prd budget spent; global 6 < 12
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);

    let mut s = manual(BudgetBucket::Prd);
    s.spawned_today_error = 10; // error budget spent; global 10 < 12
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);
}

#[test]
fn cost_just_under_the_limit_allows_and_at_limit_denies() {
    let mut s = ready_alert();
    s.cost_today_usd = 49.99;
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);
    s.cost_today_usd = 50.0;
    assert_eq!(
        decide(&policy(), &s, now()),
        deny(GateReason::DailyCost {
            limit_usd: 50.0,
            spent_usd: 50.0
        })
    );
    s.cost_today_usd = 73.5;
    assert_eq!(
        decide(&policy(), &s, now()),
        deny(GateReason::DailyCost {
            limit_usd: 50.0,
            spent_usd: 73.5
        })
    );
}

#[test]
fn cost_limit_applies_to_both_buckets() {
    let mut s = manual(BudgetBucket::Prd);
    s.cost_today_usd = 50.0;
    assert_eq!(
        decide(&policy(), &s, now()),
        deny(GateReason::DailyCost {
            limit_usd: 50.0,
            spent_usd: 50.0
        })
    );
}

#[test]
fn cost_limit_zero_is_off() {
    let p = SpawnPolicy {
        daily_cost_limit_usd: 0.0,
        ..policy()
    };
    let mut s = ready_alert();
    s.cost_today_usd = 0.0;
    assert_eq!(decide(&p, &s, now()), Decision::Allow);
    s.cost_today_usd = 1_000_000.0;
    assert_eq!(decide(&p, &s, now()), Decision::Allow);
}

// ---------------------------------------------------------------------------------------------
// Order: when several gates refuse, the earliest wins
// ---------------------------------------------------------------------------------------------

#[test]
fn order_kill_switch_beats_everything() {
    let p = SpawnPolicy {
        kill_switch: true,
        ..policy()
    };
    let s = everything_full(alert(
        "consumer-chat",
        0,
        now(),
        Some(now() + Duration::hours(1)),
    ));
    assert_eq!(decide(&p, &s, now()), deny(GateReason::KillSwitch));
}

#[test]
fn order_cooldown_beats_threshold_and_everything_after() {
    let until = now() + Duration::hours(1);
    let s = everything_full(alert("consumer-chat", 1, now(), Some(until)));
    assert_eq!(
        decide(&policy(), &s, now()),
        deny(GateReason::Cooldown { until })
    );
}

#[test]
fn order_threshold_beats_delay_and_everything_after() {
    let s = everything_full(alert("consumer-chat", 1, now(), None));
    assert_eq!(
        decide(&policy(), &s, now()),
        deny(GateReason::BelowEventThreshold {
            need: 5,
            have: 1,
            source: "consumer-chat".into()
        })
    );
}

#[test]
fn order_delay_beats_concurrency_and_everything_after() {
    let first = now() - Duration::minutes(1);
    let until = first + Duration::minutes(5);
    let s = everything_full(alert("consumer-chat", 5, first, None));
    assert_eq!(
        decide(&policy(), &s, now()),
        defer(
            until,
            GateReason::SpawnDelay {
                until,
                minutes: 5,
                source: "consumer-chat".into()
            }
        )
    );
}

#[test]
fn order_kind_concurrency_beats_global_concurrency() {
    // Both the error limit (3 >= 3) and the global one (5 >= 4) are reached.
    let s = everything_full(ready_alert());
    assert_eq!(
        decide(&policy(), &s, now()),
        concurrency(LimitScope::Error, 3)
    );
    let s = everything_full(manual(BudgetBucket::Prd));
    assert_eq!(
        decide(&policy(), &s, now()),
        concurrency(LimitScope::Prd, 2)
    );
}

#[test]
fn order_global_concurrency_beats_budget_and_cost() {
    let mut s = everything_full(ready_alert());
    s.active_error = 2; // kind under its limit, 2 + 2 = 4 reaches the global one
    assert_eq!(
        decide(&policy(), &s, now()),
        concurrency(LimitScope::Global, 4)
    );
}

#[test]
fn order_kind_concurrency_beats_budget_and_cost() {
    let mut s = everything_full(ready_alert());
    s.active_prd = 0; // only the error limit is reached
    assert_eq!(
        decide(&policy(), &s, now()),
        concurrency(LimitScope::Error, 3)
    );
}

#[test]
fn order_kind_budget_beats_global_budget_and_cost() {
    let mut s = everything_full(ready_alert());
    s.active_error = 0;
    s.active_prd = 0;
    // error 10 >= 10 and global 16 >= 12, cost over too.
    assert_eq!(decide(&policy(), &s, now()), budget(LimitScope::Error, 10));

    let mut s = everything_full(manual(BudgetBucket::Prd));
    s.active_error = 0;
    s.active_prd = 0;
    assert_eq!(decide(&policy(), &s, now()), budget(LimitScope::Prd, 6));
}

#[test]
fn order_global_budget_beats_cost() {
    let mut s = ready_alert();
    s.spawned_today_error = 9;
    s.spawned_today_prd = 3;
    s.cost_today_usd = 1_000.0;
    assert_eq!(decide(&policy(), &s, now()), budget(LimitScope::Global, 12));
}

// ---------------------------------------------------------------------------------------------
// Force and manual triggers
// ---------------------------------------------------------------------------------------------

#[test]
fn force_skips_cooldown_threshold_delay_concurrency_budget_and_cost() {
    let mut s = everything_full(alert(
        "consumer-chat",
        0,
        now(),
        Some(now() + Duration::hours(5)),
    ));
    s.force = true;
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);

    let mut s = everything_full(manual(BudgetBucket::Prd));
    s.force = true;
    assert_eq!(decide(&policy(), &s, now()), Decision::Allow);
}

#[test]
fn force_skips_each_gate_alone() {
    let first = now() - Duration::minutes(10);
    let mut cases = vec![
        alert("consumer-chat", 5, first, Some(now() + Duration::hours(1))), // cooldown
        alert("consumer-chat", 4, first, None),                             // threshold
        alert("consumer-chat", 5, now(), None),                             // delay
    ];
    let mut s = ready_alert();
    s.active_error = 3; // kind concurrency
    cases.push(s);
    let mut s = ready_alert();
    s.active_error = 2;
    s.active_prd = 2; // global concurrency
    cases.push(s);
    let mut s = ready_alert();
    s.spawned_today_error = 10; // kind budget
    cases.push(s);
    let mut s = ready_alert();
    s.spawned_today_error = 6;
    s.spawned_today_prd = 6; // global budget
    cases.push(s);
    let mut s = ready_alert();
    s.cost_today_usd = 50.0; // cost
    cases.push(s);

    for mut s in cases {
        assert!(
            !decide(&policy(), &s, now()).is_allow(),
            "unforced should refuse: {s:?}"
        );
        s.force = true;
        assert_eq!(
            decide(&policy(), &s, now()),
            Decision::Allow,
            "forced: {s:?}"
        );
    }
}

#[test]
fn force_never_skips_the_kill_switch() {
    let p = SpawnPolicy {
        kill_switch: true,
        ..policy()
    };
    for mut s in [
        ready_alert(),
        manual(BudgetBucket::Error),
        manual(BudgetBucket::Prd),
    ] {
        s.force = true;
        assert_eq!(decide(&p, &s, now()), deny(GateReason::KillSwitch), "{s:?}");
    }
}

#[test]
fn manual_trigger_ignores_cooldown_threshold_and_delay() {
    // A policy where no alert could pass: huge threshold, long delay. Manual spawns do not care.
    let p = SpawnPolicy {
        min_event_count: 1_000,
        spawn_delay: Duration::days(30),
        cooldown: Duration::days(30),
        immediate_sources: Vec::new(),
        ..policy()
    };
    assert_eq!(
        decide(&p, &manual(BudgetBucket::Error), now()),
        Decision::Allow
    );
    assert_eq!(
        decide(&p, &manual(BudgetBucket::Prd), now()),
        Decision::Allow
    );
    // The same policy refuses a fresh alert, so the policy really is strict.
    assert_eq!(
        decide(&p, &alert("consumer-chat", 999, now(), None), now()),
        deny(GateReason::BelowEventThreshold {
            need: 1_000,
            have: 999,
            source: "consumer-chat".into()
        })
    );
}

#[test]
fn manual_trigger_still_obeys_concurrency_budget_and_cost() {
    let mut s = manual(BudgetBucket::Error);
    s.active_error = 3;
    assert_eq!(
        decide(&policy(), &s, now()),
        concurrency(LimitScope::Error, 3)
    );

    let mut s = manual(BudgetBucket::Error);
    s.spawned_today_error = 10;
    assert_eq!(decide(&policy(), &s, now()), budget(LimitScope::Error, 10));

    let mut s = manual(BudgetBucket::Prd);
    s.cost_today_usd = 60.0;
    assert_eq!(
        decide(&policy(), &s, now()),
        deny(GateReason::DailyCost {
            limit_usd: 50.0,
            spent_usd: 60.0
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Defer vs Deny, reason codes and human strings
// ---------------------------------------------------------------------------------------------

#[test]
fn delay_and_concurrency_defer_the_rest_deny() {
    let kill = SpawnPolicy {
        kill_switch: true,
        ..policy()
    };
    let first = now() - Duration::minutes(10);
    let mut conc = ready_alert();
    conc.active_error = 3;
    let mut bud = ready_alert();
    bud.spawned_today_error = 10;
    let mut cost = ready_alert();
    cost.cost_today_usd = 50.0;

    let cases: Vec<(SpawnPolicy, GateSnapshot, &str, bool)> = vec![
        (kill, ready_alert(), "kill_switch", false),
        (
            policy(),
            alert("x", 5, first, Some(now() + Duration::hours(1))),
            "cooldown",
            false,
        ),
        (
            policy(),
            alert("x", 1, first, None),
            "below_event_threshold",
            false,
        ),
        (policy(), alert("x", 5, now(), None), "spawn_delay", true),
        (policy(), conc, "concurrency_limit", true),
        (policy(), bud, "daily_budget", false),
        (policy(), cost, "daily_cost", false),
    ];
    for (p, s, code, defers) in cases {
        let d = decide(&p, &s, now());
        assert_eq!(d.reason().map(GateReason::code), Some(code), "{d:?}");
        assert_eq!(matches!(d, Decision::Defer { .. }), defers, "{code}: {d:?}");
        assert_eq!(matches!(d, Decision::Deny { .. }), !defers, "{code}: {d:?}");
        assert!(!d.is_allow());
    }
}

#[test]
fn decision_helpers() {
    assert!(Decision::Allow.is_allow());
    assert_eq!(Decision::Allow.reason(), None);
    let d = deny(GateReason::KillSwitch);
    assert!(!d.is_allow());
    assert_eq!(d.reason(), Some(&GateReason::KillSwitch));
    let d = defer(
        now(),
        GateReason::ConcurrencyLimit {
            scope: LimitScope::Prd,
            limit: 2,
        },
    );
    assert!(!d.is_allow());
    assert_eq!(
        d.reason(),
        Some(&GateReason::ConcurrencyLimit {
            scope: LimitScope::Prd,
            limit: 2
        })
    );
}

fn every_reason() -> Vec<GateReason> {
    vec![
        GateReason::KillSwitch,
        GateReason::Cooldown { until: now() },
        GateReason::BelowEventThreshold {
            need: 5,
            have: 2,
            source: "consumer-chat".into(),
        },
        GateReason::SpawnDelay {
            until: now(),
            minutes: 5,
            source: "builder-chat".into(),
        },
        GateReason::ConcurrencyLimit {
            scope: LimitScope::Error,
            limit: 3,
        },
        GateReason::DailyBudget {
            scope: LimitScope::Prd,
            limit: 6,
        },
        GateReason::DailyCost {
            limit_usd: 200.0,
            spent_usd: 201.5,
        },
        GateReason::AlreadyRunning,
    ]
}

#[test]
fn reason_codes() {
    let codes: Vec<&str> = every_reason().iter().map(GateReason::code).collect();
    assert_eq!(
        codes,
        [
            "kill_switch",
            "cooldown",
            "below_event_threshold",
            "spawn_delay",
            "concurrency_limit",
            "daily_budget",
            "daily_cost",
            "already_running",
        ]
    );
}

#[test]
fn serialized_code_tag_matches_code() {
    for r in every_reason() {
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["code"], r.code(), "{v}");
        let back: GateReason = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}

#[test]
fn human_strings() {
    let strings: Vec<String> = every_reason().iter().map(ToString::to_string).collect();
    assert_eq!(
        strings,
        [
            "kill_switch",
            "cooldown",
            "below_event_threshold (need 5, have 2, source=consumer-chat)",
            "spawn_delay (waiting 5m after first seen, source=builder-chat)",
            "concurrency_limit (error limit 3 reached)",
            "daily_budget (prd budget 6 spent today, UTC)",
            "daily_cost ($201.50 of $200.00 spent today, UTC)",
            "already_running",
        ]
    );
}

#[test]
fn human_strings_name_each_scope() {
    let s = |scope| GateReason::ConcurrencyLimit { scope, limit: 4 }.to_string();
    assert_eq!(
        s(LimitScope::Error),
        "concurrency_limit (error limit 4 reached)"
    );
    assert_eq!(
        s(LimitScope::Prd),
        "concurrency_limit (prd limit 4 reached)"
    );
    assert_eq!(
        s(LimitScope::Global),
        "concurrency_limit (global limit 4 reached)"
    );
    let b = |scope| GateReason::DailyBudget { scope, limit: 12 }.to_string();
    assert_eq!(
        b(LimitScope::Error),
        "daily_budget (error budget 12 spent today, UTC)"
    );
    assert_eq!(
        b(LimitScope::Prd),
        "daily_budget (prd budget 12 spent today, UTC)"
    );
    assert_eq!(
        b(LimitScope::Global),
        "daily_budget (global budget 12 spent today, UTC)"
    );
}

#[test]
fn decision_serializes_with_a_decision_tag() {
    let v = serde_json::to_value(deny(GateReason::KillSwitch)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"decision": "deny", "reason": {"code": "kill_switch"}})
    );
    let v = serde_json::to_value(Decision::Allow).unwrap();
    assert_eq!(v, serde_json::json!({"decision": "allow"}));
    let v = serde_json::to_value(concurrency(LimitScope::Global, 4)).unwrap();
    assert_eq!(v["decision"], "defer");
    assert_eq!(v["reason"]["code"], "concurrency_limit");
    assert_eq!(v["reason"]["scope"], "global");
    assert_eq!(v["reason"]["limit"], 4);
}
