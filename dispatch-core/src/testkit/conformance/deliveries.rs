//! DeliveryStore: webhook delivery ids, de-duplicated per source.

use super::support::*;

pub(super) fn cases() -> Vec<Case> {
    cases!("deliveries": record_delivery_is_true_once_per_source_and_id, old_deliveries_are_pruned)
}

async fn record_delivery_is_true_once_per_source_and_id(store: Arc<dyn Store>) {
    let s = &*store;
    assert!(
        s.record_delivery("github", "d-1", mins(0))
            .await
            .expect("record"),
        "first delivery: true"
    );
    assert!(
        !s.record_delivery("github", "d-1", mins(1))
            .await
            .expect("record"),
        "redelivery: false"
    );
    assert!(
        !s.record_delivery("github", "d-1", mins(60 * 24 * 3))
            .await
            .expect("record"),
        "still false days later"
    );
    assert!(
        s.record_delivery("sentry", "d-1", mins(2))
            .await
            .expect("record"),
        "the same id from another source is another delivery"
    );
    assert!(
        s.record_delivery("github", "d-2", mins(3))
            .await
            .expect("record")
    );
    assert!(
        s.record_delivery("github", "D-1", mins(4))
            .await
            .expect("record"),
        "ids are compared exactly"
    );
    assert!(
        !s.record_delivery("sentry", "d-1", mins(5))
            .await
            .expect("record")
    );
    invalid(
        s.record_delivery("github", "", mins(6)).await,
        "delivery_id",
        "an empty delivery id",
    );
    invalid(
        s.record_delivery("github", "  ", mins(6)).await,
        "delivery_id",
        "a blank delivery id",
    );
}

/// SettingStore: a value per key, replaced by the next write, the same for every reader.
pub(super) fn setting_cases() -> Vec<Case> {
    cases!("settings": settings_are_absent_until_set_then_replaced)
}

async fn settings_are_absent_until_set_then_replaced(store: Arc<dyn Store>) {
    let s = &*store;
    assert_eq!(s.get_setting("kill_switch").await.expect("read"), None);
    s.set_setting("kill_switch", &serde_json::json!(true), mins(0))
        .await
        .expect("write");
    assert_eq!(
        s.get_setting("kill_switch").await.expect("read"),
        Some(serde_json::json!(true))
    );
    s.set_setting("kill_switch", &serde_json::json!(false), mins(1))
        .await
        .expect("write");
    s.set_setting("other", &serde_json::json!({ "a": [1, 2] }), mins(1))
        .await
        .expect("write");
    assert_eq!(
        s.get_setting("kill_switch").await.expect("read"),
        Some(serde_json::json!(false)),
        "the second write replaced the first"
    );
    assert_eq!(
        s.get_setting("other").await.expect("read"),
        Some(serde_json::json!({ "a": [1, 2] }))
    );
}

async fn old_deliveries_are_pruned(store: Arc<dyn Store>) {
    let s = &*store;
    assert!(
        s.record_delivery("github", "old", mins(0))
            .await
            .expect("record")
    );
    assert!(
        s.record_delivery("sentry", "old", mins(5))
            .await
            .expect("record")
    );
    assert!(
        s.record_delivery("github", "new", mins(10))
            .await
            .expect("record")
    );
    assert_eq!(s.prune_deliveries(mins(10)).await.expect("prune"), 2);
    assert!(
        !s.record_delivery("github", "new", mins(11))
            .await
            .expect("record"),
        "a recent id is still known"
    );
    assert!(
        s.record_delivery("github", "old", mins(12))
            .await
            .expect("record"),
        "a pruned id is new again"
    );
    assert_eq!(s.prune_deliveries(mins(0)).await.expect("prune"), 0);
}
