use crate::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{IssueId, RunId};
use crate::issue::AgentStatus;
use chrono::Duration;
use serde::{Deserialize, Serialize};

text_enum!(
    /// The six agent workflows (run `workflow_type` in the original).
    WorkflowKind {
        ErrorFix = "error_fix",
        PrdInvestigate = "prd_investigate",
        PrdImplement = "prd_implement",
        Qa = "qa",
        DeepResearch = "deep_research",
        AutoTriage = "auto_triage",
    }
);

/// The daily budget and concurrency bucket a kind counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetBucket {
    Error,
    Prd,
}

impl WorkflowKind {
    pub fn bucket(self) -> BudgetBucket {
        match self {
            WorkflowKind::ErrorFix => BudgetBucket::Error,
            _ => BudgetBucket::Prd,
        }
    }

    /// The spawn type names the REST API uses (`investigate`, `implement`, ...), and the run kinds.
    pub fn from_spawn_type(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error_fix" | "error" | "fix" => Ok(WorkflowKind::ErrorFix),
            "investigate" | "prd_investigate" => Ok(WorkflowKind::PrdInvestigate),
            "implement" | "prd_implement" => Ok(WorkflowKind::PrdImplement),
            "qa" => Ok(WorkflowKind::Qa),
            "research" | "deep_research" => Ok(WorkflowKind::DeepResearch),
            "triage" | "auto_triage" => Ok(WorkflowKind::AutoTriage),
            other => Err(Error::invalid(
                "type",
                format!(
                    "unknown spawn type {other:?}; expected investigate, implement, qa, research, triage or error_fix"
                ),
            )),
        }
    }

    pub fn spawn_type(self) -> &'static str {
        match self {
            WorkflowKind::ErrorFix => "error_fix",
            WorkflowKind::PrdInvestigate => "investigate",
            WorkflowKind::PrdImplement => "implement",
            WorkflowKind::Qa => "qa",
            WorkflowKind::DeepResearch => "research",
            WorkflowKind::AutoTriage => "triage",
        }
    }

    /// The agent status an issue shows while this kind runs (spec §5.9).
    pub fn agent_status(self) -> AgentStatus {
        match self {
            WorkflowKind::ErrorFix | WorkflowKind::PrdInvestigate => AgentStatus::Investigating,
            WorkflowKind::PrdImplement => AgentStatus::Implementing,
            WorkflowKind::Qa => AgentStatus::Testing,
            WorkflowKind::DeepResearch => AgentStatus::Researching,
            WorkflowKind::AutoTriage => AgentStatus::Triaging,
        }
    }

    /// Implement and QA work from an approved plan and refuse to start without one.
    pub fn needs_approved_plan(self) -> bool {
        matches!(self, WorkflowKind::PrdImplement | WorkflowKind::Qa)
    }

    /// The workflow file in the target repository (spec §7.1).
    pub fn workflow_file(self) -> &'static str {
        match self {
            WorkflowKind::ErrorFix => "auto-investigate.yml",
            WorkflowKind::PrdInvestigate => "prd-investigate.yml",
            WorkflowKind::PrdImplement => "prd-implement.yml",
            WorkflowKind::Qa => "qa-test.yml",
            WorkflowKind::DeepResearch => "deep-research.yml",
            WorkflowKind::AutoTriage => "auto-triage.yml",
        }
    }
}

text_enum!(
    /// queued → dispatching → running → completed / failed / cancelled / timed_out.
    RunStatus {
        Queued = "queued",
        Dispatching = "dispatching",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
        TimedOut = "timed_out",
    }
);

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled | RunStatus::TimedOut
        )
    }
    /// Holds a concurrency slot.
    pub fn is_active(self) -> bool {
        !self.is_terminal()
    }
    /// Allowed moves. Terminal states are final; a late callback cannot resurrect a run.
    pub fn can_move_to(self, next: RunStatus) -> bool {
        use RunStatus::*;
        if self == next {
            return true;
        }
        match self {
            Queued => matches!(next, Dispatching | Running | Failed | Cancelled),
            Dispatching => matches!(
                next,
                Queued | Running | Failed | Cancelled | TimedOut | Completed
            ),
            Running => matches!(next, Completed | Failed | Cancelled | TimedOut),
            _ => false,
        }
    }
}

text_enum!(
    /// The agent's declared result (run-result.json `outcome`).
    Outcome {
        Completed = "completed",
        NoChangesNeeded = "no_changes_needed",
        InvestigationComplete = "investigation_complete",
        Blocked = "blocked",
        NeedsHumanDecision = "needs_human_decision",
        Failed = "failed",
    }
);

text_enum!(
    /// Why an agent stopped (spec §2.4).
    BlockerCategory {
        MissingEnv = "missing_env",
        UnclearRequirement = "unclear_requirement",
        MissingDependency = "missing_dependency",
        TestFailure = "test_failure",
        DesignDecision = "design_decision",
        OutOfScope = "out_of_scope",
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocker {
    pub category: BlockerCategory,
    pub reason: String,
}

impl Blocker {
    pub fn validate(&self) -> Result<()> {
        if self.reason.trim().is_empty() {
            return Err(Error::invalid("reason", "a blocker needs a reason"));
        }
        Ok(())
    }
    /// `[category] reason`, the form shown on the issue.
    pub fn display(&self) -> String {
        format!("[{}] {}", self.category, self.reason.trim())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub issue_id: IssueId,
    pub kind: WorkflowKind,
    pub status: RunStatus,
    /// Extra human context passed to the agent.
    pub additional_context: Option<String>,
    pub force: bool,
    /// Who asked for it (user name, "Loki Webhook", ...).
    pub requested_by: String,

    /// Dispatcher bookkeeping: earliest time to (re)try, attempts so far, the last error,
    /// and the lease of the process that claimed it.
    pub not_before: Timestamp,
    pub dispatch_attempts: u32,
    pub last_error: Option<String>,
    pub lease_until: Option<Timestamp>,

    /// The runner's handle on the run (GitHub run id, local pid, ...), and a link to it.
    pub runner: Option<String>,
    pub external_id: Option<String>,
    pub external_url: Option<String>,

    pub outcome: Option<Outcome>,
    pub outcome_summary: Option<String>,
    pub cost_usd: f64,
    pub num_turns: u32,
    pub model: Option<String>,
    pub tokens_used: Option<u64>,
    pub pr_number: Option<i64>,
    pub files_changed: Vec<String>,
    pub follow_ups: Vec<String>,
    pub prompt_text: Option<String>,
    pub report_content: Option<String>,

    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    /// Last sign of life from the agent (any callback); staleness is measured from here.
    pub last_callback_at: Option<Timestamp>,
    /// The agent's last heartbeat (`POST …/runs/current/heartbeat`). A run that has heartbeated
    /// once is judged by the heartbeat timeout from then on ([`liveness`]); one that never did
    /// (a workflow installed from the original) by the stale-run timeout.
    #[serde(default)]
    pub heartbeat_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// Someone asked to cancel while the run was being dispatched: the dispatcher stops what it
    /// started as soon as the runner returns (the run keeps its slot until then).
    #[serde(default)]
    pub cancel_requested_at: Option<Timestamp>,
    /// How long the issue's error waits after this run ends before it may spawn again (error
    /// fixes: the policy's cooldown when the run was reserved). Set on the error links in the
    /// transaction that ends the run.
    #[serde(default)]
    pub cooldown_seconds: Option<i64>,
    /// Which claim of the run this is: every claim for dispatch counts up, and every write a
    /// dispatcher makes after its claim names the claim it holds ([`RunPatch::expect_claim`]),
    /// so a dispatcher whose lease ran out while another process claimed the run again cannot
    /// record its result over the newer one.
    #[serde(default)]
    pub claim: u64,
}

impl Run {
    /// A dispatcher claims the run: it is being dispatched until `now + lease`, under a new
    /// claim number.
    pub fn claim_for_dispatch(&mut self, now: Timestamp, lease: chrono::Duration) {
        self.status = RunStatus::Dispatching;
        self.lease_until = Some(now + lease);
        self.claim = self.claim.saturating_add(1);
        self.updated_at = now;
    }

    pub fn duration_seconds(&self, now: Timestamp) -> Option<i64> {
        let start = self.started_at?;
        Some(
            (self.completed_at.unwrap_or(now) - start)
                .num_seconds()
                .max(0),
        )
    }
}

/// A run to insert (the store fills in bookkeeping).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRun {
    pub issue_id: IssueId,
    pub kind: WorkflowKind,
    pub additional_context: Option<String>,
    pub force: bool,
    pub requested_by: String,
}

impl NewRun {
    pub fn into_run(self, now: Timestamp) -> Run {
        Run {
            id: RunId::new(),
            issue_id: self.issue_id,
            kind: self.kind,
            status: RunStatus::Queued,
            additional_context: self.additional_context,
            force: self.force,
            requested_by: self.requested_by,
            not_before: now,
            dispatch_attempts: 0,
            last_error: None,
            lease_until: None,
            runner: None,
            external_id: None,
            external_url: None,
            outcome: None,
            outcome_summary: None,
            cost_usd: 0.0,
            num_turns: 0,
            model: None,
            tokens_used: None,
            pr_number: None,
            files_changed: Vec::new(),
            follow_ups: Vec::new(),
            prompt_text: None,
            report_content: None,
            cancel_requested_at: None,
            cooldown_seconds: None,
            claim: 0,
            created_at: now,
            started_at: None,
            last_callback_at: None,
            heartbeat_at: None,
            completed_at: None,
            updated_at: now,
        }
    }
}

impl Run {
    /// The last sign of life: the newest callback or heartbeat, else the start, else creation.
    /// Stores index running runs by it (`stale_runs`).
    pub fn alive_at(&self) -> Timestamp {
        self.last_callback_at
            .max(self.heartbeat_at)
            .or(self.started_at)
            .unwrap_or(self.created_at)
    }
}

/// How long a running run may stay silent before the sweeper ends it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LivenessPolicy {
    /// `STALE_RUN_MINUTES`: for runs whose agent never heartbeated.
    pub stale_after: Duration,
    /// `AGENT_HEARTBEAT_TIMEOUT_SECONDS`: for runs whose agent heartbeats.
    pub heartbeat_timeout: Duration,
}

impl LivenessPolicy {
    /// The shortest silence that can end a run: stores are asked for runs silent this long,
    /// and [`liveness`] decides each.
    pub fn shortest(&self) -> Duration {
        self.stale_after.min(self.heartbeat_timeout)
    }
}

/// What the sweeper makes of a running run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Silent longer than its timeout: `heartbeats` tells which timeout (`after`) it exceeded.
    Dead {
        heartbeats: bool,
        after: Duration,
    },
}

/// The liveness rule: a run that has heartbeated is dead after `heartbeat_timeout` without a
/// sign of life; one that never did after `stale_after`. Only running runs can be dead.
pub fn liveness(run: &Run, now: Timestamp, policy: &LivenessPolicy) -> Liveness {
    if run.status != RunStatus::Running {
        return Liveness::Alive;
    }
    let heartbeats = run.heartbeat_at.is_some();
    let after = if heartbeats {
        policy.heartbeat_timeout
    } else {
        policy.stale_after
    };
    if now - run.alive_at() > after {
        Liveness::Dead { heartbeats, after }
    } else {
        Liveness::Alive
    }
}

impl Liveness {
    /// The run's failure summary.
    pub fn summary(&self) -> Option<String> {
        match *self {
            Liveness::Alive => None,
            Liveness::Dead {
                heartbeats: true,
                after,
            } => Some(format!(
                "Agent lost: no heartbeat for {}s",
                after.num_seconds()
            )),
            Liveness::Dead {
                heartbeats: false,
                after,
            } => Some(format!(
                "Run timed out (no callback received after {}m)",
                after.num_minutes()
            )),
        }
    }
}

/// A partial update of a run. Values are *set*, never added, so callbacks are idempotent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunPatch {
    pub status: Option<RunStatus>,
    pub not_before: Option<Timestamp>,
    pub dispatch_attempts: Option<u32>,
    pub last_error: Option<Option<String>>,
    pub lease_until: Option<Option<Timestamp>>,
    pub runner: Option<String>,
    pub external_id: Option<String>,
    pub external_url: Option<String>,
    pub outcome: Option<Outcome>,
    pub outcome_summary: Option<String>,
    pub cost_usd: Option<f64>,
    pub num_turns: Option<u32>,
    pub model: Option<String>,
    pub tokens_used: Option<u64>,
    pub pr_number: Option<i64>,
    pub files_changed: Option<Vec<String>>,
    pub follow_ups: Option<Vec<String>>,
    pub prompt_text: Option<String>,
    pub report_content: Option<String>,
    pub started_at: Option<Timestamp>,
    pub last_callback_at: Option<Timestamp>,
    /// A heartbeat (kept as the newest; ignored by terminal runs).
    #[serde(default)]
    pub heartbeat_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    /// Records a cancel request (only the first is kept).
    pub cancel_requested_at: Option<Timestamp>,
    /// Fencing: the write applies only while the run's claim is this one (a dispatcher's
    /// writes after its claim); otherwise it is a `Conflict` and nothing changes.
    #[serde(default)]
    pub expect_claim: Option<u64>,
    /// The notifications of the update (the budget warning, "agent finished"), rendered from
    /// what it did and stored in its transaction. Not part of the patch's JSON.
    #[serde(skip)]
    pub outbox: crate::outbox::OutboxPlan<crate::ports::RunUpdate>,
}

impl RunPatch {
    pub fn validate(&self) -> Result<()> {
        if let Some(c) = self.cost_usd
            && (!c.is_finite() || c < 0.0)
        {
            return Err(Error::invalid(
                "cost_usd",
                "cost must be a non-negative number",
            ));
        }
        Ok(())
    }

    /// Applies the patch in place. A status move that [`RunStatus::can_move_to`] forbids is
    /// ignored (late callbacks after a timeout or cancel). Terminal statuses set `completed_at`
    /// if it is not set yet.
    ///
    /// A run that was already terminal keeps what it ended with — status, outcome, summary, PR,
    /// files, times: a late stale timeout, cancel or finish cannot rewrite a finished run. Only
    /// what arrives late by nature is taken: cost, turns, tokens, model and the report, the
    /// runner's handle when it had none (so that what a dispatch started can still be found and
    /// stopped), and the last sign of life.
    pub fn apply_to(&self, run: &mut Run, now: Timestamp) {
        if run.status.is_terminal() {
            self.apply_late_to(run, now);
            return;
        }
        if let Some(s) = self.status
            && run.status.can_move_to(s)
        {
            run.status = s;
            if s.is_terminal() && run.completed_at.is_none() {
                run.completed_at = Some(self.completed_at.unwrap_or(now));
            }
            if s == RunStatus::Running && run.started_at.is_none() {
                run.started_at = Some(self.started_at.unwrap_or(now));
            }
        }
        macro_rules! set {
            ($f:ident) => {
                if let Some(v) = &self.$f {
                    run.$f = v.clone();
                }
            };
            (opt $f:ident) => {
                if let Some(v) = &self.$f {
                    run.$f = Some(v.clone());
                }
            };
        }
        set!(not_before);
        set!(dispatch_attempts);
        set!(last_error);
        set!(lease_until);
        set!(opt runner);
        set!(opt external_id);
        set!(opt external_url);
        set!(opt outcome);
        set!(opt outcome_summary);
        set!(cost_usd);
        set!(num_turns);
        set!(opt model);
        set!(opt tokens_used);
        set!(opt pr_number);
        set!(files_changed);
        set!(follow_ups);
        set!(opt prompt_text);
        set!(opt report_content);
        set!(opt started_at);
        if let Some(t) = self.last_callback_at {
            run.last_callback_at = Some(run.last_callback_at.map_or(t, |old| old.max(t)));
        }
        if let Some(t) = self.heartbeat_at {
            run.heartbeat_at = Some(run.heartbeat_at.map_or(t, |old| old.max(t)));
        }
        if let Some(t) = self.completed_at
            && run.status.is_terminal()
        {
            run.completed_at = Some(t);
        }
        if let Some(t) = self.cancel_requested_at
            && run.cancel_requested_at.is_none()
        {
            run.cancel_requested_at = Some(t);
        }
        run.updated_at = now;
    }

    /// What a terminal run still takes (see [`RunPatch::apply_to`]).
    fn apply_late_to(&self, run: &mut Run, now: Timestamp) {
        if let Some(c) = self.cost_usd {
            run.cost_usd = c;
        }
        if let Some(n) = self.num_turns {
            run.num_turns = n;
        }
        if let Some(t) = self.tokens_used {
            run.tokens_used = Some(t);
        }
        if let Some(m) = &self.model {
            run.model = Some(m.clone());
        }
        if let Some(r) = &self.report_content {
            run.report_content = Some(r.clone());
        }
        if run.external_id.is_none()
            && let Some(id) = &self.external_id
        {
            run.external_id = Some(id.clone());
            if let Some(u) = &self.external_url {
                run.external_url = Some(u.clone());
            }
            if let Some(r) = &self.runner {
                run.runner = Some(r.clone());
            }
        }
        if let Some(t) = self.last_callback_at {
            run.last_callback_at = Some(run.last_callback_at.map_or(t, |old| old.max(t)));
        }
        run.updated_at = now;
    }
}
