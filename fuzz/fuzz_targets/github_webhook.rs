//! GitHub webhook bodies as the server reads them: any bytes through the server's JSON body
//! parser (`json_body::parse`) as a `ping`, a `pull_request` and a `workflow_run` event, then the
//! decisions taken on a parsed event (commit messages of a release PR, production deploy).
//! No panic on any body; what parses yields at most 250 commit messages per list.
#![no_main]
use dispatch_adapters::github_webhook::{
    Ping, PullRequestEvent, WorkflowRunEvent, commit_messages, is_production_deploy,
};
use dispatch_adapters::json_body::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse::<Ping>(data);
    if let Ok(e) = parse::<PullRequestEvent>(data) {
        let a = commit_messages(e.commits.as_ref());
        let b = commit_messages(e.pull_request.commits.as_ref());
        assert!(a.len() <= 250 && b.len() <= 250);
    }
    if let Ok(e) = parse::<WorkflowRunEvent>(data) {
        let on_main = is_production_deploy(&e.workflow_run, &e.action, "main");
        let branch = e.workflow_run.head_branch.clone().unwrap_or_default();
        // A deploy of the run's own branch is judged by the rest only.
        if on_main {
            assert!(is_production_deploy(&e.workflow_run, &e.action, &branch));
        }
    }
});
