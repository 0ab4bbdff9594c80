//! The spawn reservation as a plan (issue 10: every transaction script a pure function). A store
//! locks and loads what [`ReservationInputs`] names inside one transaction, calls
//! [`plan_reservation`], and applies the [`ReservationPlan`] — it decides nothing itself, so
//! every store reserves the same way.

use super::run::{NewRun, Run, WorkflowKind};
use super::spawn_effects::spawn_effects;
use crate::Timestamp;
use crate::gate::{Decision, GateReason, GateSnapshot, Trigger, decide};
use crate::ids::{DeferredSpawnId, IssueId};
use crate::issue::{Column, Issue};
use crate::ports::{DeferredSpawn, ErrorLink, IssueUpdate, SpawnRequest};

/// Fleet counters read in the reservation's transaction (today is the UTC day of `now`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GateCounters {
    pub active_error: u32,
    pub active_prd: u32,
    pub spawned_today_error: u32,
    pub spawned_today_prd: u32,
    pub cost_today_usd: f64,
}

impl From<(u32, u32, u32, u32, f64)> for GateCounters {
    fn from((ae, ap, se, sp, cost): (u32, u32, u32, u32, f64)) -> Self {
        GateCounters {
            active_error: ae,
            active_prd: ap,
            spawned_today_error: se,
            spawned_today_prd: sp,
            cost_today_usd: cost,
        }
    }
}

/// What the store read, under its locks.
#[derive(Debug, Clone, Copy)]
pub struct ReservationInputs<'a> {
    pub request: &'a SpawnRequest,
    pub issue: &'a Issue,
    /// Whether the issue has a queued, dispatching or running run.
    pub issue_has_active_run: bool,
    /// The issue's most recently seen error link (needed for alert requests only).
    pub latest_link: Option<&'a ErrorLink>,
    pub counters: GateCounters,
    /// The issue's deferred spawns, every kind.
    pub deferred: &'a [DeferredSpawn],
    pub columns: &'a [Column],
    pub now: Timestamp,
}

/// What to write, in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct ReservationPlan {
    pub decision: Decision,
    /// The queued run to insert, when allowed.
    pub insert_run: Option<Run>,
    /// The issue write recording the spawn, when allowed.
    pub issue_update: Option<(IssueId, IssueUpdate)>,
    /// A deferred spawn to insert or replace (by id).
    pub save_deferred: Option<DeferredSpawn>,
    /// Deferred spawns that are settled.
    pub delete_deferred: Vec<DeferredSpawnId>,
}

/// The reservation: one agent per issue; the gates; a deferral merged into the issue's pending
/// one of the same kind (the new due time and reason replace the old, `force` sticks); an
/// allowed spawn settles every deferred spawn of its issue, so none fires later and queues a
/// second run; a refusal settles the deferred spawn being retried.
pub fn plan_reservation(i: ReservationInputs<'_>) -> ReservationPlan {
    let req = i.request;
    let own: Vec<DeferredSpawnId> = req.deferred_id.into_iter().collect();
    if i.issue_has_active_run {
        return ReservationPlan {
            decision: Decision::Deny {
                reason: GateReason::AlreadyRunning,
            },
            insert_run: None,
            issue_update: None,
            save_deferred: None,
            delete_deferred: own,
        };
    }
    let trigger = match (req.from_alert, i.latest_link) {
        (true, Some(l)) => Trigger::Alert {
            source: l
                .metadata
                .get("source")
                .and_then(|v| v.as_str())
                .unwrap_or(&l.source)
                .to_string(),
            event_count: l.event_count,
            first_seen_at: l.first_seen_at,
            cooldown_until: l.cooldown_until,
        },
        _ => Trigger::Manual,
    };
    let c = i.counters;
    let snapshot = GateSnapshot {
        bucket: req.kind.bucket(),
        trigger,
        force: req.force,
        active_error: c.active_error,
        active_prd: c.active_prd,
        spawned_today_error: c.spawned_today_error,
        spawned_today_prd: c.spawned_today_prd,
        cost_today_usd: c.cost_today_usd,
    };
    let decision = decide(&req.policy, &snapshot, i.now);
    match &decision {
        Decision::Allow => {
            let run = NewRun {
                issue_id: i.issue.id,
                kind: req.kind,
                additional_context: req.additional_context.clone(),
                force: req.force,
                requested_by: req.actor.name.clone(),
            }
            .into_run(i.now);
            let mut run = run;
            if req.kind == WorkflowKind::ErrorFix {
                run.cooldown_seconds = Some(req.policy.cooldown.num_seconds());
            }
            let fx = spawn_effects(i.issue, &run, i.columns, &req.actor, i.now);
            let mut delete: Vec<DeferredSpawnId> = i
                .deferred
                .iter()
                .filter(|d| d.issue_id == i.issue.id)
                .map(|d| d.id)
                .collect();
            for id in own {
                if !delete.contains(&id) {
                    delete.push(id);
                }
            }
            ReservationPlan {
                decision,
                insert_run: Some(run),
                issue_update: Some((i.issue.id, fx.into_update(i.now))),
                save_deferred: None,
                delete_deferred: delete,
            }
        }
        Decision::Defer { until, reason } => {
            let existing = req
                .deferred_id
                .and_then(|id| i.deferred.iter().find(|d| d.id == id))
                .or_else(|| {
                    i.deferred
                        .iter()
                        .find(|d| d.issue_id == i.issue.id && d.kind == req.kind)
                });
            let d = match existing {
                Some(d) => {
                    let mut d = d.clone();
                    d.due_at = *until;
                    d.reason = reason.to_string();
                    d.lease_until = None;
                    d.force = d.force || req.force;
                    if req.additional_context.is_some() {
                        d.additional_context = req.additional_context.clone();
                    }
                    d
                }
                None => DeferredSpawn {
                    id: DeferredSpawnId::new(),
                    issue_id: i.issue.id,
                    kind: req.kind,
                    from_alert: req.from_alert,
                    force: req.force,
                    additional_context: req.additional_context.clone(),
                    actor: req.actor.clone(),
                    due_at: *until,
                    reason: reason.to_string(),
                    attempts: 0,
                    lease_until: None,
                    created_at: i.now,
                },
            };
            ReservationPlan {
                decision,
                insert_run: None,
                issue_update: None,
                save_deferred: Some(d),
                delete_deferred: Vec::new(),
            }
        }
        Decision::Deny { .. } => ReservationPlan {
            decision,
            insert_run: None,
            issue_update: None,
            save_deferred: None,
            delete_deferred: own,
        },
    }
}
