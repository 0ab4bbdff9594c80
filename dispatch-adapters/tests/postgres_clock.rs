//! Issue 10 #9: on PostgreSQL, leases, stale cutoffs and UTC day windows are compared across
//! processes, so every process reads the database's clock (`DatabaseClock`): its own clock plus
//! the measured offset. A process whose clock is a year off still agrees with the database.
#![cfg(feature = "postgres")]

mod support;

use chrono::Duration;
use dispatch_adapters::postgres::DatabaseClock;
use dispatch_core::Clock;
use dispatch_core::testkit::ManualClock;
use std::sync::Arc;

async fn db_now(pool: &sqlx::PgPool) -> dispatch_core::Timestamp {
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn close(a: dispatch_core::Timestamp, b: dispatch_core::Timestamp) -> bool {
    (a - b).num_milliseconds().abs() < 2_000
}

#[tokio::test]
async fn a_process_with_a_wrong_clock_reads_the_databases_time() {
    let admin = support::admin_pool().await;
    // This process's clock: months behind (the manual clock starts in January 2026).
    let local = Arc::new(ManualClock::at_default());
    let clock = DatabaseClock::start(
        admin.clone(),
        local.clone(),
        std::time::Duration::from_secs(3600),
    )
    .await
    .unwrap();
    let truth = db_now(&admin).await;
    assert!(
        !close(local.now(), truth),
        "the test needs a local clock that is off"
    );
    assert!(close(clock.now(), truth), "{} vs {truth}", clock.now());
    assert!(close(local.now() + clock.offset(), truth));

    // Time passing on this process passes on the clock too (no round trip per reading).
    local.advance(Duration::minutes(10));
    assert!(close(
        clock.now(),
        db_now(&admin).await + Duration::minutes(10)
    ));

    // The local clock jumped: the next measurement brings the clock back to the database's.
    clock.resample().await.unwrap();
    assert!(close(clock.now(), db_now(&admin).await));
}
