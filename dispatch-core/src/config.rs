//! Engine configuration from environment variables, with the names users of the original
//! Dispatch already know. Parsing is a pure function over a lookup so it is testable; a bad value
//! is an `InvalidInput` error naming the variable.

use crate::error::{Error, Result};
use crate::gate::SpawnPolicy;
use crate::verify::VerifyPolicy;
use chrono::Duration;

/// Everything the engine needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// `DEFAULT_WORKSPACE_NAME` (Dispatch).
    pub workspace_name: String,
    /// `DEFAULT_ISSUE_PREFIX` (DISPATCH).
    pub issue_prefix: String,
    pub policy: SpawnPolicy,
    pub verify: VerifyPolicy,
    /// `STALE_RUN_MINUTES` (45): a running run with no callback for this long times out.
    pub stale_after: Duration,
    /// `AGENT_HEARTBEAT_TIMEOUT_SECONDS` (300): a running run whose agent heartbeats ends when
    /// no heartbeat or callback came for this long (runs that never heartbeat: `stale_after`).
    pub heartbeat_timeout: Duration,
    /// `AUTO_SPAWN_ORIGINS` (loki): alert origins whose errors start agents by themselves
    /// (Sentry issues never did in the original).
    pub auto_spawn_origins: Vec<String>,
    /// `RESPAWN_ON_FIX_FAILURE` (false): a failed fix spawns a new error_fix run through the gates.
    pub respawn_on_fix_failure: bool,
    /// `DISPATCH_MAX_ATTEMPTS` (3): dispatch tries before a run fails.
    pub max_dispatch_attempts: u32,
    /// `DISPATCH_RETRY_BASE_SECONDS` (10): first retry delay, doubled each time (capped at 10 min).
    pub retry_base: Duration,
    /// `DISPATCH_LEASE_SECONDS` (10): how long a claimed run or deferred spawn belongs to the
    /// claiming process. A dispatcher renews it while its runner works, so it bounds how long a
    /// run waits after a crash, not how long a dispatch may take.
    pub lease: Duration,
    /// `RETENTION_DAYS` (0 = keep forever): activities and terminal chunks older than this are pruned.
    pub retention: Option<Duration>,
    /// How often the loops of [`crate::Dispatch::run`] tick.
    pub dispatcher_interval: std::time::Duration,
    pub sweeper_interval: std::time::Duration,
    /// Thresholds of PR ↔ issue matching by similarity (PRs that name no issue).
    pub pr_match: crate::pr_match::MatchPolicy,
    /// Release PRs (spec §6.2): the staging branch merged into the deploy branch.
    pub release: crate::pr_match::ReleasePolicy,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workspace_name: "Dispatch".into(),
            issue_prefix: "DISPATCH".into(),
            policy: SpawnPolicy::default(),
            verify: VerifyPolicy::default(),
            stale_after: Duration::minutes(45),
            heartbeat_timeout: Duration::seconds(300),
            auto_spawn_origins: vec!["loki".into()],
            respawn_on_fix_failure: false,
            max_dispatch_attempts: 3,
            retry_base: Duration::seconds(10),
            lease: Duration::seconds(10),
            retention: None,
            dispatcher_interval: std::time::Duration::from_secs(1),
            sweeper_interval: std::time::Duration::from_secs(15),
            pr_match: crate::pr_match::MatchPolicy::default(),
            release: crate::pr_match::ReleasePolicy::default(),
        }
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl Unit {
    fn seconds(self) -> f64 {
        match self {
            Unit::Seconds => 1.0,
            Unit::Minutes => 60.0,
            Unit::Hours => 3600.0,
            Unit::Days => 86_400.0,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Unit::Seconds => "seconds",
            Unit::Minutes => "minutes",
            Unit::Hours => "hours",
            Unit::Days => "days",
        }
    }
    /// `d` in this unit, for messages.
    fn of(self, d: Duration) -> f64 {
        d.num_seconds() as f64 / self.seconds()
    }
}

struct Vars<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl Vars<'_> {
    fn raw(&self, name: &str) -> Option<String> {
        (self.get)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }
    fn first(&self, names: &[&str]) -> Option<(String, String)> {
        names
            .iter()
            .find_map(|n| self.raw(n).map(|v| (n.to_string(), v)))
    }
    fn num<T: std::str::FromStr>(&self, names: &[&str], default: T) -> Result<T> {
        match self.first(names) {
            None => Ok(default),
            Some((name, v)) => v.parse::<T>().map_err(|_| {
                Error::invalid(
                    name.clone(),
                    format!("{name}={v:?} is not a valid non-negative number"),
                )
            }),
        }
    }
    fn float(&self, names: &[&str], default: f64) -> Result<f64> {
        let v: f64 = self.num(names, default)?;
        if !v.is_finite() || v < 0.0 {
            let name = names.first().copied().unwrap_or("?");
            return Err(Error::invalid(
                name,
                format!("{name} must be a non-negative number"),
            ));
        }
        Ok(v)
    }
    /// A duration given in `unit` (seconds per unit; fractions allowed), at least `min` and at
    /// most ten years: a negative, unbounded or absurd value is refused with an error naming the
    /// variable instead of overflowing a timestamp later.
    fn duration(
        &self,
        names: &[&str],
        default: Duration,
        unit: Unit,
        min: Duration,
    ) -> Result<Duration> {
        let Some((name, raw)) = self.first(names) else {
            return Ok(default);
        };
        let max = Duration::days(3650);
        let secs = raw
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(|n| n * unit.seconds());
        match secs {
            Some(secs) if secs >= min.num_seconds() as f64 && secs <= max.num_seconds() as f64 => {
                Ok(Duration::milliseconds((secs * 1000.0).round() as i64))
            }
            _ => Err(Error::invalid(
                name.clone(),
                format!(
                    "{name}={raw:?} must be a number of {} from {} to {} (ten years)",
                    unit.name(),
                    unit.of(min),
                    unit.of(max),
                ),
            )),
        }
    }
    fn flag(&self, names: &[&str], default: bool) -> Result<bool> {
        match self.first(names) {
            None => Ok(default),
            Some((name, v)) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(Error::invalid(
                    name.clone(),
                    format!("{name}={v:?} is not true or false"),
                )),
            },
        }
    }
}

impl EngineConfig {
    /// When a silent running run ends ([`crate::run::liveness`]).
    pub fn liveness(&self) -> crate::run::LivenessPolicy {
        crate::run::LivenessPolicy {
            stale_after: self.stale_after,
            heartbeat_timeout: self.heartbeat_timeout,
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get` (the environment, a `.env` map, a test table).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let v = Vars { get };
        let d = EngineConfig::default();
        let dp = SpawnPolicy::default();

        let issue_prefix = v
            .raw("DEFAULT_ISSUE_PREFIX")
            .unwrap_or(d.issue_prefix)
            .to_ascii_uppercase();
        if issue_prefix.len() > 16 || !issue_prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::invalid(
                "DEFAULT_ISSUE_PREFIX",
                "DEFAULT_ISSUE_PREFIX must be 1-16 letters or digits (e.g. ENG)",
            ));
        }
        let workspace_name = v.raw("DEFAULT_WORKSPACE_NAME").unwrap_or(d.workspace_name);

        // The kill switch is on only for exactly "true" in the original; we accept the usual
        // spellings of true, and refuse anything unclear rather than guess.
        let kill_switch = v.flag(&["SPAWN_KILL_SWITCH"], false)?;
        let immediate_sources = match v.raw("IMMEDIATE_SPAWN_SOURCES") {
            Some(s) => s
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
            None => dp.immediate_sources.clone(),
        };
        let max_error = v.num(&["MAX_CONCURRENT_SPAWNS_ERROR"], dp.max_concurrent_error)?;
        let budget_error = v.num(&["DAILY_SPAWN_BUDGET_ERROR"], dp.daily_budget_error)?;
        let policy = SpawnPolicy {
            kill_switch,
            cooldown: v.duration(
                &["SPAWN_COOLDOWN_HOURS"],
                dp.cooldown,
                Unit::Hours,
                Duration::zero(),
            )?,
            min_event_count: v.num(
                &["MIN_EVENT_COUNT_TO_SPAWN", "RUNTIME_EVENT_THRESHOLD"],
                dp.min_event_count,
            )?,
            spawn_delay: v.duration(
                &["SPAWN_DELAY_MINUTES", "RUNTIME_SPAWN_DELAY_MINUTES"],
                dp.spawn_delay,
                Unit::Minutes,
                Duration::zero(),
            )?,
            immediate_sources,
            max_concurrent_error: max_error,
            max_concurrent_prd: v.num(&["MAX_CONCURRENT_SPAWNS_PRD"], dp.max_concurrent_prd)?,
            max_concurrent_global: v.num(&["MAX_CONCURRENT_SPAWNS"], dp.max_concurrent_global)?,
            daily_budget_error: budget_error,
            daily_budget_prd: v.num(&["DAILY_SPAWN_BUDGET_PRD"], dp.daily_budget_prd)?,
            daily_budget_global: v.num(&["DAILY_SPAWN_BUDGET"], dp.daily_budget_global)?,
            daily_cost_limit_usd: v.float(&["DAILY_COST_LIMIT_USD"], dp.daily_cost_limit_usd)?,
            concurrency_retry: dp.concurrency_retry,
        };
        let verify = VerifyPolicy {
            window: v.duration(
                &["VERIFICATION_WINDOW_HOURS"],
                Duration::hours(48),
                Unit::Hours,
                Duration::minutes(1),
            )?,
            wait_for_deploy: v.flag(&["VERIFY_WAIT_FOR_DEPLOY"], false)?,
        };
        let stale_after = v.duration(
            &["STALE_RUN_MINUTES"],
            d.stale_after,
            Unit::Minutes,
            Duration::minutes(1),
        )?;
        // Agents heartbeat every minute: below 30 s one late heartbeat would end a live run.
        let heartbeat_timeout = v.duration(
            &["AGENT_HEARTBEAT_TIMEOUT_SECONDS"],
            d.heartbeat_timeout,
            Unit::Seconds,
            Duration::seconds(30),
        )?;
        // 0 (the default) keeps everything.
        let retention = v.duration(
            &["RETENTION_DAYS"],
            Duration::zero(),
            Unit::Days,
            Duration::zero(),
        )?;
        let max_attempts: u32 = v.num(&["DISPATCH_MAX_ATTEMPTS"], d.max_dispatch_attempts)?;
        // A dispatcher renews its claim every third of this while the runner works, so it bounds
        // how long a run waits after its dispatcher's process died, not how long a dispatch may take.
        let lease = v.duration(
            &["DISPATCH_LEASE_SECONDS"],
            d.lease,
            Unit::Seconds,
            Duration::seconds(2),
        )?;
        Ok(EngineConfig {
            workspace_name,
            issue_prefix,
            policy,
            verify,
            stale_after,
            heartbeat_timeout,
            auto_spawn_origins: match v.raw("AUTO_SPAWN_ORIGINS") {
                Some(s) => s
                    .split(',')
                    .map(|x| x.trim().to_ascii_lowercase())
                    .filter(|x| !x.is_empty())
                    .collect(),
                None => d.auto_spawn_origins.clone(),
            },
            respawn_on_fix_failure: v.flag(&["RESPAWN_ON_FIX_FAILURE"], false)?,
            max_dispatch_attempts: max_attempts.max(1),
            retry_base: v.duration(
                &["DISPATCH_RETRY_BASE_SECONDS"],
                d.retry_base,
                Unit::Seconds,
                Duration::zero(),
            )?,
            lease,
            retention: (retention > Duration::zero()).then_some(retention),
            dispatcher_interval: d.dispatcher_interval,
            sweeper_interval: d.sweeper_interval,
            pr_match: d.pr_match.clone(),
            release: crate::pr_match::ReleasePolicy {
                deploy_branch: v
                    .raw("GITHUB_REF")
                    .map(|r| r.strip_prefix("refs/heads/").unwrap_or(&r).to_string())
                    .unwrap_or(d.release.deploy_branch),
                head_branch: v
                    .raw("GITHUB_RELEASE_HEAD_BRANCH")
                    .map(|r| r.strip_prefix("refs/heads/").unwrap_or(&r).to_string())
                    .unwrap_or(d.release.head_branch),
                ..d.release
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<EngineConfig> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EngineConfig::from_lookup(&move |k| m.get(k).cloned())
    }

    #[test]
    fn defaults_match_documented_values() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.issue_prefix, "DISPATCH");
        assert_eq!(c.policy.cooldown, Duration::hours(24));
        assert_eq!(c.policy.min_event_count, 5);
        assert_eq!(c.verify.window, Duration::hours(48));
        assert_eq!(c.stale_after, Duration::minutes(45));
        assert!(!c.policy.kill_switch);
        assert_eq!(c.release.deploy_branch, "main");
        assert_eq!(c.release.head_branch, "staging");
        assert_eq!(c.release.min_confidence, 85);
    }

    #[test]
    fn release_branches_follow_github_ref_and_the_release_head() {
        let c = cfg(&[
            ("GITHUB_REF", "refs/heads/production"),
            ("GITHUB_RELEASE_HEAD_BRANCH", "develop"),
        ])
        .unwrap();
        assert!(c.release.is_release(Some("production"), Some("develop")));
        assert!(!c.release.is_release(Some("main"), Some("staging")));
    }

    #[test]
    fn reads_original_names_and_aliases() {
        let c = cfg(&[
            ("DEFAULT_ISSUE_PREFIX", "eng"),
            ("SPAWN_KILL_SWITCH", "true"),
            ("MIN_EVENT_COUNT_TO_SPAWN", "3"),
            ("RUNTIME_SPAWN_DELAY_MINUTES", "2"),
            ("MAX_CONCURRENT_SPAWNS_ERROR", "3"),
            ("DAILY_SPAWN_BUDGET_ERROR", "10"),
            ("DAILY_COST_LIMIT_USD", "0"),
            ("IMMEDIATE_SPAWN_SOURCES", "deploy, infra"),
        ])
        .unwrap();
        assert_eq!(c.issue_prefix, "ENG");
        assert!(c.policy.kill_switch);
        assert_eq!(c.policy.min_event_count, 3);
        assert_eq!(c.policy.spawn_delay, Duration::minutes(2));
        assert_eq!(c.policy.max_concurrent_error, 3);
        assert_eq!(c.policy.daily_budget_error, 10);
        assert_eq!(c.policy.daily_cost_limit_usd, 0.0);
        assert_eq!(c.policy.immediate_sources, vec!["deploy", "infra"]);
    }

    #[test]
    fn negative_unbounded_and_absurd_durations_are_refused_not_panics() {
        for (var, value) in [
            ("SPAWN_COOLDOWN_HOURS", "1e15"),
            ("SPAWN_COOLDOWN_HOURS", "-1"),
            ("SPAWN_COOLDOWN_HOURS", "inf"),
            ("SPAWN_COOLDOWN_HOURS", "NaN"),
            ("SPAWN_DELAY_MINUTES", "1e300"),
            ("VERIFICATION_WINDOW_HOURS", "0"),
            ("VERIFICATION_WINDOW_HOURS", "9e18"),
            ("STALE_RUN_MINUTES", "-5"),
            ("STALE_RUN_MINUTES", "0"),
            ("AGENT_HEARTBEAT_TIMEOUT_SECONDS", "10"),
            ("AGENT_HEARTBEAT_TIMEOUT_SECONDS", "-300"),
            ("RETENTION_DAYS", "99999999999"),
            ("DISPATCH_RETRY_BASE_SECONDS", "-10"),
        ] {
            let e = cfg(&[(var, value)]).expect_err(&format!("{var}={value} must be refused"));
            assert_eq!(e.field(), Some(var), "{var}={value}: {e}");
            assert!(e.to_string().contains(var), "{e}");
        }
    }

    #[test]
    fn fractional_and_edge_durations_are_exact() {
        let c = cfg(&[
            ("SPAWN_COOLDOWN_HOURS", "0.5"),
            ("SPAWN_DELAY_MINUTES", "0"),
            ("VERIFICATION_WINDOW_HOURS", "87600"),
            ("STALE_RUN_MINUTES", "1"),
            ("RETENTION_DAYS", "30"),
        ])
        .unwrap();
        assert_eq!(c.policy.cooldown, Duration::minutes(30));
        assert_eq!(c.policy.spawn_delay, Duration::zero());
        assert_eq!(c.verify.window, Duration::days(3650));
        assert_eq!(c.stale_after, Duration::minutes(1));
        assert_eq!(c.retention, Some(Duration::days(30)));
        assert_eq!(cfg(&[]).unwrap().retention, None);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = cfg(&[("MAX_CONCURRENT_SPAWNS_ERROR", "lots")]).unwrap_err();
        assert_eq!(e.field(), Some("MAX_CONCURRENT_SPAWNS_ERROR"));
        assert!(e.to_string().contains("MAX_CONCURRENT_SPAWNS_ERROR"));
        assert_eq!(
            cfg(&[("SPAWN_KILL_SWITCH", "maybe")]).unwrap_err().field(),
            Some("SPAWN_KILL_SWITCH")
        );
        assert_eq!(
            cfg(&[("DEFAULT_ISSUE_PREFIX", "A-B")]).unwrap_err().field(),
            Some("DEFAULT_ISSUE_PREFIX")
        );
        assert_eq!(
            cfg(&[("DAILY_COST_LIMIT_USD", "-1")]).unwrap_err().field(),
            Some("DAILY_COST_LIMIT_USD")
        );
    }
}
