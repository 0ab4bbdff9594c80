//! The whole loop in memory, in a few seconds of wall time:
//! an error alert → an issue → the gates → a queued run → an agent (simulated here) streaming its
//! terminal → its result → a merged fix PR → monitoring → verified → the issue closes.
//!
//! `cargo run -q -p dispatch-core --example demo`

use async_trait::async_trait;
use chrono::Duration;
use dispatch_core::config::EngineConfig;
use dispatch_core::event::ErrorEvent;
use dispatch_core::gate::SpawnPolicy;
use dispatch_core::ids::RunId;
use dispatch_core::issue::Actor;
use dispatch_core::memory::{MemoryEventBus, MemoryStore};
use dispatch_core::ports::{
    DispatchReceipt, Event, EventBus, RunJob, RunReporter, RunResult, Runner,
};
use dispatch_core::run::{ActivityType, NewActivity, Outcome, Run};
use dispatch_core::verify::MergedPr;
use dispatch_core::{Dispatch, Result};
use futures::StreamExt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Plays an agent: streams a few lines, reports, and finishes with a PR.
struct SimulatedAgent;

#[async_trait]
impl Runner for SimulatedAgent {
    fn name(&self) -> &str {
        "simulated"
    }

    async fn dispatch(
        &self,
        job: RunJob,
        reporter: Arc<dyn RunReporter>,
    ) -> Result<DispatchReceipt> {
        let run: RunId = job.run.id;
        tokio::spawn(async move {
            let lines = [
                format!(
                    "Investigating {}: {}\n",
                    job.issue.identifier, job.issue.title
                ),
                "[TOOL] Grep(pattern=\"charge_customer\")\n".to_string(),
                "[RESULT] src/billing/charge.rs:88: let card = customer.card.unwrap();\n"
                    .to_string(),
                "Root cause: a customer without a card on file panics the charge job.\n"
                    .to_string(),
                "[COMPLETED] Cost: $0.42, Turns: 7\n".to_string(),
            ];
            for l in lines {
                let _ = reporter.terminal(run, &l).await;
                tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            }
            let report = NewActivity::new(
                ActivityType::InvestigationComplete,
                "Root cause found; fix in PR #101",
            );
            let _ = reporter.activity(run, report).await;
            let _ = reporter
                .finish(
                    run,
                    RunResult {
                        outcome: Some(Outcome::Completed),
                        summary: Some("Guarded the missing card case".into()),
                        cost_usd: Some(0.42),
                        num_turns: Some(7),
                        model: Some("claude-opus-4-6".into()),
                        pr_number: Some(101),
                        ..RunResult::default()
                    },
                )
                .await;
        });
        Ok(DispatchReceipt {
            external_id: Some(format!("sim-{run}")),
            external_url: None,
        })
    }

    async fn cancel(&self, _run: &Run) -> Result<bool> {
        Ok(true)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let bus = Arc::new(MemoryEventBus::new());
    // Demo settings: spawn on the first event, verify after 2 seconds instead of 48 hours.
    let defaults = EngineConfig::default();
    let config = EngineConfig {
        policy: SpawnPolicy {
            min_event_count: 1,
            spawn_delay: Duration::zero(),
            ..SpawnPolicy::default()
        },
        verify: dispatch_core::verify::VerifyPolicy {
            window: Duration::seconds(2),
            ..defaults.verify
        },
        sweeper_interval: std::time::Duration::from_millis(250),
        ..defaults
    };
    let dispatch = Dispatch::builder(Arc::new(MemoryStore::new()), Arc::new(SimulatedAgent))
        .bus(bus.clone())
        .config(config)
        .build()
        .await?;

    let cancel = CancellationToken::new();
    let engine = dispatch.clone();
    let loops = tokio::spawn({
        let cancel = cancel.clone();
        async move { engine.run(cancel).await }
    });

    // Print what a board viewer would see.
    let viewer = dispatch.clone();
    let mut events = bus.subscribe();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            match e {
                Event::TerminalChunk { run_id, seq, .. } => {
                    if let Ok(c) = viewer.read_terminal(run_id, seq - 1, 1).await {
                        for chunk in c {
                            print!("    │ {}", chunk.content);
                        }
                    }
                }
                Event::IssueMoved { issue_id, to, .. } => {
                    let cols = viewer.columns().await.unwrap_or_default();
                    let name = cols
                        .iter()
                        .find(|c| c.id == to)
                        .map(|c| c.name.as_str())
                        .unwrap_or("?");
                    if let Ok(i) = viewer.get_issue(issue_id).await {
                        println!("  ▸ {} moved to {name}", i.identifier);
                    }
                }
                _ => {}
            }
        }
    });

    println!("1. An alert arrives from Grafana/Loki");
    let event = ErrorEvent::new(
        "loki",
        "billing",
        "charge-customer",
        "Charge failed for customer cus_Nf8dJ2kLq9: card missing (job 1705314600123)",
    );
    let report = dispatch.ingest(event).await?;
    println!(
        "  ▸ {} created: {}",
        report.issue.identifier, report.issue.title
    );
    println!("  ▸ normalised: {:?}", report.normalized);
    println!("  ▸ fingerprint {}", &report.fingerprint[..12]);
    println!(
        "  ▸ gates: {:?}",
        report.spawn.as_ref().map(|s| &s.decision)
    );

    println!("2. The dispatcher hands the queued run to the agent, which streams its terminal");
    let ident = report.issue.identifier.clone();
    wait_until(|| async {
        dispatch
            .get_issue(ident.as_str())
            .await
            .map(|i| i.spawn_completed_at.is_some())
            .unwrap_or(false)
    })
    .await;
    let issue = dispatch.get_issue(ident.as_str()).await?;
    println!(
        "  ▸ run finished: {:?}, cost ${:.2}, {} turns",
        issue.run_outcome, issue.cost_usd, issue.num_turns
    );

    println!("3. The fix PR is merged; Dispatch watches for the error to come back");
    let pr = MergedPr {
        number: 101,
        url: Some("https://github.com/acme/app/pull/101".into()),
        title: Some(format!("fix(billing): guard missing card [{ident}]")),
        body: None,
        head_branch: Some(format!("auto-fix/{}", ident.to_lowercase())),
        base_branch: Some("main".into()),
        merged_at: dispatch.clock().now(),
        merge_sha: Some("9f86d081884c7d65".into()),
    };
    dispatch
        .pr_merged(&pr, &Actor::webhook("GitHub Webhook"))
        .await?;
    let status = dispatch.fix_status(ident.as_str()).await?;
    println!("  ▸ {}", status.latest_description.unwrap_or_default());
    if let Some(reason) = status.close_block_reason {
        println!("  ▸ closing is blocked until then: {reason}");
    }

    println!(
        "4. No recurrence during the window: the sweeper verifies the fix and closes the issue"
    );
    wait_until(|| async {
        dispatch
            .fix_status(ident.as_str())
            .await
            .map(|s| s.can_close)
            .unwrap_or(false)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let issue = dispatch.get_issue(ident.as_str()).await?;
    let cols = dispatch.columns().await?;
    let col = cols
        .iter()
        .find(|c| c.id == issue.column_id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    println!("  ▸ {} is now in {col}", issue.identifier);

    cancel.cancel();
    let _ = loops.await;
    Ok(())
}

async fn wait_until<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
