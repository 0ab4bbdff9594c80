//! The Store conformance suite: ONE set of behaviour cases that every [`Store`] implementation
//! must pass (memory today; SQLite and PostgreSQL run the very same cases).
//!
//! An implementation hooks in with a factory that hands out a fresh, empty store per case:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
//! async fn conformance() {
//!     let factory: Box<StoreFactory> =
//!         Box::new(|| Box::pin(async { Arc::new(MyStore::new().await) as Arc<dyn Store> }));
//!     let filter = std::env::var("CONFORMANCE_FILTER").ok();
//!     run_suite_filtered(&*factory, filter.as_deref()).await;
//! }
//! ```
//!
//! Cases only use the [`Store`] traits and the pure domain types, never an implementation's
//! internals. Time is always passed in (fixed timestamps around 2026-01-15 09:00 UTC), nothing
//! sleeps. Concurrency cases start their tasks together behind a `tokio::sync::Barrier`, so they
//! need a multi-thread runtime to mean anything.

use crate::ports::Store;
use futures::future::BoxFuture;
use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Builds the case list of one module: `cases!("issues": case_fn, ...)`.
macro_rules! cases {
    ($module:literal: $($case:ident),* $(,)?) => {
        vec![$($crate::testkit::conformance::Case {
            name: concat!($module, "::", stringify!($case)),
            run: |store| -> ::futures::future::BoxFuture<'static, ()> { Box::pin($case(store)) },
        }),*]
    };
}

mod agent_events;
mod concurrency;
mod customers;
mod deliveries;
mod embeddings;
mod errors;
mod fixes;
mod imports;
mod issues;
mod links;
mod orchestrator;
mod outbox;
mod outbox_tx;
mod runs;
mod search;
mod support;
mod usage;
mod workspace;

/// Hands out a fresh, empty store for one case.
pub type StoreFactory = dyn Fn() -> BoxFuture<'static, Arc<dyn Store>> + Send + Sync;

/// One behaviour of the Store contract.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// `aggregate::behaviour`, e.g. `runs::claim_due_runs_respects_not_before_lease_and_limit`.
    pub name: &'static str,
    pub run: fn(Arc<dyn Store>) -> BoxFuture<'static, ()>,
}

/// How long one case may take before it counts as hung (a deadlock in a store).
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Every case, grouped by aggregate.
pub fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(workspace::cases());
    all.extend(issues::cases());
    all.extend(errors::cases());
    all.extend(runs::cases());
    all.extend(fixes::cases());
    all.extend(customers::cases());
    all.extend(search::cases());
    all.extend(deliveries::cases());
    all.extend(deliveries::setting_cases());
    all.extend(usage::cases());
    all.extend(links::cases());
    all.extend(agent_events::cases());
    all.extend(orchestrator::cases());
    all.extend(outbox::cases());
    all.extend(outbox_tx::cases());
    all.extend(embeddings::cases());
    all.extend(imports::cases());
    all.extend(concurrency::cases());
    all
}

/// Runs every case on a fresh store from `factory`, each in its own tokio task so that a panic
/// in one case is caught and reported; at the end panics listing every failed case by name (and
/// its panic message), or returns the number of cases passed.
pub async fn run_suite(factory: &StoreFactory) -> usize {
    run_suite_filtered(factory, None).await
}

/// [`run_suite`] restricted to the cases whose name contains `filter` (all when `None`).
/// Panics when the filter matches no case, so a typo does not pass silently.
pub async fn run_suite_filtered(factory: &StoreFactory, filter: Option<&str>) -> usize {
    let selected: Vec<Case> = cases()
        .into_iter()
        .filter(|c| filter.is_none_or(|f| c.name.contains(f)))
        .collect();
    assert!(
        !selected.is_empty(),
        "no conformance case matches the filter {filter:?}"
    );
    let suite_started = Instant::now();
    let mut passed = 0;
    let mut failures: Vec<(&'static str, String)> = Vec::new();
    for case in &selected {
        let store = factory().await;
        let started = Instant::now();
        let handle = tokio::spawn((case.run)(store));
        let abort = handle.abort_handle();
        match tokio::time::timeout(CASE_TIMEOUT, handle).await {
            Ok(Ok(())) => {
                passed += 1;
                eprintln!(
                    "conformance {} ... ok ({:.1?})",
                    case.name,
                    started.elapsed()
                );
            }
            Ok(Err(e)) if e.is_panic() => {
                let msg = panic_message(&*e.into_panic());
                eprintln!("conformance {} ... FAILED: {msg}", case.name);
                failures.push((case.name, msg));
            }
            Ok(Err(e)) => failures.push((case.name, format!("the case's task ended: {e}"))),
            Err(_) => {
                abort.abort();
                failures.push((case.name, format!("did not finish within {CASE_TIMEOUT:?}")));
            }
        }
    }
    eprintln!(
        "conformance: {passed} passed, {} failed in {:.2?}",
        failures.len(),
        suite_started.elapsed()
    );
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|(n, m)| format!("  {n}: {m}"))
            .collect();
        panic!(
            "{} of {} Store conformance cases failed:\n{}",
            failures.len(),
            selected.len(),
            list.join("\n")
        );
    }
    passed
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}
