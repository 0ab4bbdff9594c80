//! Your own runner: the engine reserves a run through its gates, the dispatcher hands it to
//! [`ScriptRunner`], which reports output and the end through the engine — the same paths the
//! reference server's agent callbacks use.
//!
//!     cargo run -p dispatch-examples --bin custom_runner

use dispatch_core::engine::SpawnOptions;
use dispatch_core::issue::{Actor, NewIssue};
use dispatch_core::memory::MemoryStore;
use dispatch_core::run::WorkflowKind;
use dispatch_core::{Dispatch, config::EngineConfig, gate::SpawnPolicy};
use dispatch_examples::ScriptRunner;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dispatch = Dispatch::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(ScriptRunner::default()),
    )
    .config(EngineConfig {
        policy: SpawnPolicy::permissive(),
        ..EngineConfig::default()
    })
    .build()
    .await?;
    let me = Actor::user("you");
    let issue = dispatch
        .create_issue(NewIssue::titled("Export to CSV drops the last row"), &me)
        .await?;
    let outcome = dispatch
        .spawn(issue.id, SpawnOptions::new(WorkflowKind::AutoTriage), &me)
        .await?;
    println!("{}: {:?}", issue.identifier, outcome.decision);
    dispatch.dispatcher_step().await?;
    // The runner reports from its own task; wait for the run to end.
    let run = loop {
        let runs = dispatch.runs(issue.id).await?;
        if runs[0].status.is_terminal() {
            break runs[0].clone();
        }
        tokio::task::yield_now().await;
    };
    println!(
        "run {} ended {} — {}",
        run.id,
        run.status,
        run.outcome_summary.unwrap_or_default()
    );
    print!("{}", dispatch.transcript(run.id).await?);
    Ok(())
}
