//! Server configuration from the environment (and a `.env` file in the working directory), with
//! the original Dispatch's variable names. Everything is validated before the server starts; a
//! bad value stops it with a message that names the variable.

use dispatch_adapters::claude::ClaudeConfig;
use dispatch_adapters::open::StoreUrl;
use dispatch_core::config::EngineConfig;
use dispatch_core::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A secret value: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `PORT` (3002).
    pub port: u16,
    /// `HOST` (0.0.0.0).
    pub host: String,
    /// `DISPATCH_APP_URL` / `NEXT_PUBLIC_APP_URL`: the public URL (links in notifications, portal).
    pub app_url: String,
    /// `DISPATCH_API_KEY`: bearer key for callbacks, MCP and automation (generated if unset).
    pub api_key: Secret,
    /// `DISPATCH_PASSWORD`: the login password (generated if unset).
    pub password: Secret,
    /// `DISPATCH_SESSION_SECRET`: signs session cookies (generated if unset).
    pub session_secret: Secret,
    /// `LOKI_WEBHOOK_SECRET`: bearer secret for the Grafana webhook (`DISPATCH_API_KEY` also works).
    pub loki_webhook_secret: Option<Secret>,
    /// `GRAFANA_WEBHOOK_HMAC_SECRET`: when set, Grafana's HMAC signature is required too.
    pub grafana_hmac_secret: Option<Secret>,
    /// `GRAFANA_WEBHOOK_SIGNATURE_HEADER` (X-Grafana-Alerting-Signature).
    pub grafana_signature_header: String,
    /// `GRAFANA_WEBHOOK_TIMESTAMP_HEADER` (X-Grafana-Alerting-Timestamp): checked for freshness.
    pub grafana_timestamp_header: String,
    /// `SENTRY_CLIENT_SECRET`: verifies `Sentry-Hook-Signature`.
    pub sentry_client_secret: Option<Secret>,
    /// `GITHUB_WEBHOOK_SECRET`: verifies `X-Hub-Signature-256`.
    pub github_webhook_secret: Option<Secret>,
    /// `METRICS_PUBLIC` (false): serve `/metrics` without the API key.
    pub metrics_public: bool,
    /// `AGENT_WEBHOOK_ALLOW_PRIVATE` (false): agents' webhook URLs may point at loopback, private
    /// or link-local addresses (receivers on an internal network).
    pub agent_webhook_allow_private: bool,
    /// Slack (`SLACK_BOT_TOKEN`, `SLACK_API_BASE_URL`); `None` without a token.
    pub slack: Option<dispatch_adapters::slack::SlackConfig>,
    /// `NOTIFICATIONS_ENABLED`: Slack notifications are off only for a case-insensitive `false`
    /// (the original's toggle; anything else, unset included, leaves them on).
    pub notifications_enabled: bool,
    /// `INTERNAL_SLACK_CHANNEL_ID`: the team's channel for new errors and agent runs.
    pub internal_slack_channel: Option<String>,
    /// `MAX_AGENT_COST_PER_RUN` (25): the per-run budget; a run that cost ≥ 90 % of it is
    /// flagged in its Slack reply.
    pub max_agent_cost_per_run: f64,
    /// Event webhooks (`EVENT_WEBHOOK_URLS`, `EVENT_WEBHOOK_SECRET`, `EVENT_WEBHOOK_EVENTS`).
    pub event_webhooks: Vec<dispatch_core::outbox::events::Subscription>,
    /// `OUTBOX_RETENTION_DAYS` (7, 0–3650): settled outbox deliveries (Slack messages, webhooks:
    /// delivered, skipped or failed for good) are deleted by the sweeper once their last try is
    /// this old; `0` keeps them forever.
    pub outbox_retention_days: u32,
    /// `MCP_ALLOWED_HOSTS`: more `Host` names (comma-separated, `host` or `host:port`) the MCP
    /// endpoint answers besides the public URL's host and loopback (DNS-rebinding protection).
    pub mcp_allowed_hosts: Vec<String>,
    /// `TRUSTED_PROXIES`: comma-separated addresses or networks (`10.0.0.0/8`) of reverse
    /// proxies whose `X-Forwarded-For` names the client (login and portal limits, logs). Empty:
    /// the header is ignored (a client could claim any address).
    pub trusted_proxies: Vec<crate::auth::Cidr>,
    /// `MAX_BODY_BYTES` (1 MiB).
    pub max_body_bytes: usize,
    /// `SSE_KEEPALIVE_SECONDS` (30, 1–3600): the SSE `: ping` comment and the issue stream's
    /// heartbeat.
    pub sse_keepalive: std::time::Duration,
    /// `SECURE_COOKIES`: mark the session cookie Secure (default: when `app_url` is https).
    pub secure_cookies: bool,
    /// `DISPATCH_WORKERS` (true): run the dispatcher and sweeper in this process. Set false for
    /// API-only replicas; some process on the same database must run them. Every process sends
    /// outbox deliveries (Slack, webhooks) either way.
    pub workers: bool,
    /// `SESSION_TTL_HOURS` (168 = 7 days).
    pub session_ttl_hours: i64,
    /// `ANTHROPIC_API_KEY` (+ `ANTHROPIC_BASE_URL`, `ORCHESTRATOR_MODEL`): Claude as the engine's
    /// LLM, which confirms PR ↔ issue matches found by similarity. `None` without a key.
    pub llm: Option<ClaudeConfig>,
    /// `OPENAI_API_KEY` (+ `OPENAI_BASE_URL`, `OPENAI_EMBEDDING_MODEL`,
    /// `OPENAI_EMBEDDING_DIMENSIONS`): embeddings for hybrid search, similar issues, PR matching
    /// and duplicate detection. `None` without a key (all of these stay lexical).
    pub embeddings: Option<dispatch_adapters::openai_embed::OpenAiEmbedConfig>,
    /// `ORCHESTRATOR_MAX_TOKENS` (4096), `ORCHESTRATOR_MAX_TOOL_ROUNDS` (10),
    /// `ORCHESTRATOR_PROPOSAL_TTL_MINUTES` (15); the model is `ORCHESTRATOR_MODEL` (in `llm`).
    pub orchestrator: dispatch_core::orchestrator::OrchestratorConfig,
    /// The orchestrator's Loki tools (`LOKI_URL`, …): `loki_errors`, `loki_search`, ….
    pub loki_tools: Option<dispatch_adapters::analytics::loki::LokiToolsConfig>,
    /// The orchestrator's read-only SQL tools (`ANALYTICS_DATABASE_URL`, …).
    #[cfg(feature = "postgres")]
    pub sql_tools: Option<dispatch_adapters::analytics::sql::SqlToolsConfig>,
    /// Loki gateway for the "User Impact" section of new Grafana alerts (`LOKI_GATEWAY_URL`).
    pub loki_gateway: Option<dispatch_adapters::loki_gateway::LokiGatewayConfig>,
    /// White-label names of the web UI (the original's variables).
    pub brand: Brand,
    /// Which database.
    pub store: StoreUrl,
    pub engine: EngineConfig,
    /// Where generated secrets are kept between starts.
    pub secrets_path: PathBuf,
    /// Which secrets were generated at this start (to print them once).
    pub generated: Vec<&'static str>,
}

/// The web UI's white-label settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Brand {
    /// `NEXT_PUBLIC_APP_NAME` (Dispatch).
    pub app_name: String,
    /// `NEXT_PUBLIC_APP_DESCRIPTION`.
    pub description: String,
    /// `NEXT_PUBLIC_BRAND_BRAILLE`: braille art for the header (`\n` separates lines).
    pub braille: String,
    /// `NEXT_PUBLIC_ORCHESTRATOR_MODEL`: the model label shown in the terminal.
    pub model_label: String,
    /// `NEXT_PUBLIC_GITHUB_REPO` (`owner/name`): "View on GitHub" links.
    pub github_repo: Option<String>,
}

/// A whole number in `min..=max`, `default` when unset; the error names the variable.
fn bounded(
    get: &dyn Fn(&str) -> Option<String>,
    var: &str,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32> {
    match nonempty(get, var) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                Error::invalid(
                    var,
                    format!("{var}={v:?} must be a whole number from {min} to {max}"),
                )
            }),
    }
}

/// The default header art: a small dispatch "signal" mark.
pub const DEFAULT_BRAILLE: &str = "⠀⣠⣶⣿⣿⣶⣄⠀\n⢸⣿⠋⣠⣄⠙⣿⡇\n⠘⢿⣦⣈⣁⣴⡿⠃";

impl Brand {
    fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let github_repo = nonempty(get, "NEXT_PUBLIC_GITHUB_REPO");
        if let Some(r) = &github_repo {
            let ok = r.split('/').count() == 2
                && r.split('/').all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                });
            if !ok {
                return Err(Error::invalid(
                    "NEXT_PUBLIC_GITHUB_REPO",
                    "NEXT_PUBLIC_GITHUB_REPO must be owner/name",
                ));
            }
        }
        Ok(Brand {
            app_name: nonempty(get, "NEXT_PUBLIC_APP_NAME").unwrap_or_else(|| "Dispatch".into()),
            description: nonempty(get, "NEXT_PUBLIC_APP_DESCRIPTION")
                .unwrap_or_else(|| "Production errors and requests in, verified fixes out.".into()),
            braille: nonempty(get, "NEXT_PUBLIC_BRAND_BRAILLE")
                .unwrap_or_else(|| DEFAULT_BRAILLE.into())
                .replace("\\n", "\n"),
            model_label: nonempty(get, "NEXT_PUBLIC_ORCHESTRATOR_MODEL")
                .or_else(|| nonempty(get, "ORCHESTRATOR_MODEL"))
                .unwrap_or_else(|| "claude".into()),
            github_repo,
        })
    }
}

/// Reads a `.env` file: `KEY=VALUE` lines, `#` comments, optional quotes, `export ` prefix.
pub fn read_dotenv(path: &Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let mut v = v.trim();
        if (v.starts_with('"') && v.ends_with('"') && v.len() >= 2)
            || (v.starts_with('\'') && v.ends_with('\'') && v.len() >= 2)
        {
            v = &v[1..v.len() - 1];
        }
        out.insert(k.trim().to_string(), v.to_string());
    }
    out
}

/// The process environment, falling back to `.env` values (the environment wins).
pub fn env_lookup() -> impl Fn(&str) -> Option<String> {
    let dotenv = read_dotenv(Path::new(".env"));
    move |k: &str| std::env::var(k).ok().or_else(|| dotenv.get(k).cloned())
}

fn nonempty(get: &dyn Fn(&str) -> Option<String>, k: &str) -> Option<String> {
    get(k)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn flag(get: &dyn Fn(&str) -> Option<String>, k: &str, default: bool) -> Result<bool> {
    match nonempty(get, k) {
        None => Ok(default),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(Error::invalid(k, format!("{k}={v:?} is not true or false"))),
        },
    }
}

fn secret(
    get: &dyn Fn(&str) -> Option<String>,
    k: &'static str,
    min_len: usize,
) -> Result<Option<Secret>> {
    match nonempty(get, k) {
        None => Ok(None),
        Some(v) if v.len() < min_len => Err(Error::invalid(
            k,
            format!("{k} must be at least {min_len} characters"),
        )),
        Some(v) => Ok(Some(Secret(v))),
    }
}

/// `SLACK_BOT_TOKEN` and `SLACK_API_BASE_URL`.
fn slack_config(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<dispatch_adapters::slack::SlackConfig>> {
    let Some(token) = nonempty(get, "SLACK_BOT_TOKEN") else {
        return Ok(None);
    };
    if token.chars().any(char::is_whitespace) {
        return Err(Error::invalid(
            "SLACK_BOT_TOKEN",
            "SLACK_BOT_TOKEN must be one token (xoxb-…) without spaces",
        ));
    }
    let mut c = dispatch_adapters::slack::SlackConfig::new(token);
    if let Some(base) = nonempty(get, "SLACK_API_BASE_URL") {
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::invalid(
                "SLACK_API_BASE_URL",
                format!("SLACK_API_BASE_URL={base:?} must be an http(s) URL"),
            ));
        }
        c.base_url = base.trim_end_matches('/').to_string();
    }
    Ok(Some(c))
}

/// `EVENT_WEBHOOK_URLS` (comma-separated), `EVENT_WEBHOOK_SECRET` (required with URLs, at
/// least 16 characters), `EVENT_WEBHOOK_EVENTS` (comma-separated, default all).
fn event_webhooks(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<dispatch_core::outbox::events::Subscription>> {
    let Some(urls) = nonempty(get, "EVENT_WEBHOOK_URLS") else {
        return Ok(Vec::new());
    };
    let secret = secret(get, "EVENT_WEBHOOK_SECRET", 16)?.ok_or_else(|| {
        Error::invalid(
            "EVENT_WEBHOOK_SECRET",
            "EVENT_WEBHOOK_SECRET is required with EVENT_WEBHOOK_URLS (it signs every delivery)",
        )
    })?;
    let events = dispatch_core::outbox::events::parse_events(
        "EVENT_WEBHOOK_EVENTS",
        &nonempty(get, "EVENT_WEBHOOK_EVENTS").unwrap_or_default(),
    )?;
    let mut out: Vec<dispatch_core::outbox::events::Subscription> = Vec::new();
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        dispatch_core::agent::validate_webhook_url("EVENT_WEBHOOK_URLS", url)?;
        if !out.iter().any(|s| s.url == url) {
            out.push(dispatch_core::outbox::events::Subscription {
                url: url.to_string(),
                secret: secret.expose().to_string(),
                events: events.clone(),
            });
        }
    }
    Ok(out)
}

impl ServerConfig {
    /// What the engine sends through its outbox.
    pub fn outbox(&self) -> dispatch_core::engine::OutboxConfig {
        dispatch_core::engine::OutboxConfig {
            slack: (self.slack.is_some() && self.notifications_enabled).then(|| {
                dispatch_core::outbox::slack::SlackRouting {
                    internal_channel: self.internal_slack_channel.clone(),
                    app_url: self.app_url.clone(),
                    max_cost_per_run_usd: self.max_agent_cost_per_run,
                }
            }),
            subscriptions: self.event_webhooks.clone(),
            policy: dispatch_core::outbox::RetryPolicy::default(),
            retention: (self.outbox_retention_days > 0)
                .then(|| chrono::Duration::days(i64::from(self.outbox_retention_days))),
        }
    }

    /// Builds the configuration; missing secrets are taken from (or generated into) the secrets
    /// file so that they stay the same across restarts.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let port = match nonempty(get, "PORT") {
            None => 3002,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| Error::invalid("PORT", format!("PORT={p:?} is not a port number")))?,
        };
        let host = nonempty(get, "HOST").unwrap_or_else(|| "0.0.0.0".into());
        let app_url = nonempty(get, "DISPATCH_APP_URL")
            .or_else(|| nonempty(get, "NEXT_PUBLIC_APP_URL"))
            .unwrap_or_else(|| format!("http://localhost:{port}"));
        if !(app_url.starts_with("http://") || app_url.starts_with("https://")) {
            return Err(Error::invalid(
                "DISPATCH_APP_URL",
                "DISPATCH_APP_URL must be an http(s) URL",
            ));
        }
        let store = StoreUrl::from_lookup(get)?;
        let engine = EngineConfig::from_lookup(get)?;
        let llm = ClaudeConfig::from_lookup(get)?;
        let embeddings = dispatch_adapters::openai_embed::OpenAiEmbedConfig::from_lookup(get)?;
        let brand = Brand::from_lookup(get)?;
        let orchestrator = dispatch_core::orchestrator::OrchestratorConfig {
            model: None,
            max_tokens: bounded(get, "ORCHESTRATOR_MAX_TOKENS", 4096, 1, 128_000)?,
            max_rounds: bounded(get, "ORCHESTRATOR_MAX_TOOL_ROUNDS", 10, 1, 50)?,
            proposal_ttl: chrono::Duration::minutes(
                bounded(get, "ORCHESTRATOR_PROPOSAL_TTL_MINUTES", 15, 1, 24 * 60)?.into(),
            ),
            app_name: brand.app_name.clone(),
            ..Default::default()
        };
        let loki_gateway = dispatch_adapters::loki_gateway::LokiGatewayConfig::from_lookup(get)?;
        let secrets_path = nonempty(get, "DISPATCH_SECRETS_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| match &store {
                StoreUrl::Sqlite(p) => {
                    let p = p
                        .trim_start_matches("sqlite://")
                        .trim_start_matches("sqlite:");
                    let dir = Path::new(p)
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .unwrap_or(Path::new("."));
                    dir.join("dispatch.secrets.json")
                }
                StoreUrl::Postgres(_) => PathBuf::from("dispatch.secrets.json"),
            });
        let mut generated = Vec::new();
        let mut persisted = crate::secrets::SecretsFile::load(&secrets_path)?;
        let mut take =
            |name: &'static str, env: Option<Secret>, generate: fn() -> String| -> Secret {
                if let Some(s) = env {
                    return s;
                }
                if let Some(s) = persisted.get(name) {
                    return Secret(s);
                }
                let s = generate();
                persisted.set(name, &s);
                generated.push(name);
                Secret(s)
            };
        let api_key = take(
            "DISPATCH_API_KEY",
            secret(get, "DISPATCH_API_KEY", 16)?,
            crate::secrets::new_api_key,
        );
        let password = take(
            "DISPATCH_PASSWORD",
            secret(get, "DISPATCH_PASSWORD", 8)?,
            crate::secrets::new_password,
        );
        let session_secret = take(
            "DISPATCH_SESSION_SECRET",
            secret(get, "DISPATCH_SESSION_SECRET", 32)?,
            crate::secrets::new_api_key,
        );
        if !generated.is_empty() {
            persisted.save(&secrets_path)?;
        }
        let max_body_bytes = match nonempty(get, "MAX_BODY_BYTES") {
            None => 1024 * 1024,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1024)
                .ok_or_else(|| {
                    Error::invalid(
                        "MAX_BODY_BYTES",
                        "MAX_BODY_BYTES must be a number of bytes, at least 1024",
                    )
                })?,
        };
        let sse_keepalive = match nonempty(get, "SSE_KEEPALIVE_SECONDS") {
            None => std::time::Duration::from_secs(30),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=3600).contains(n))
                .map(std::time::Duration::from_secs)
                .ok_or_else(|| {
                    Error::invalid(
                        "SSE_KEEPALIVE_SECONDS",
                        "SSE_KEEPALIVE_SECONDS must be a number of seconds from 1 to 3600",
                    )
                })?,
        };
        let session_ttl_hours = match nonempty(get, "SESSION_TTL_HOURS") {
            None => 168,
            Some(v) => v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::invalid(
                    "SESSION_TTL_HOURS",
                    "SESSION_TTL_HOURS must be a positive number",
                )
            })?,
        };
        Ok(ServerConfig {
            port,
            host,
            secure_cookies: flag(get, "SECURE_COOKIES", app_url.starts_with("https://"))?,
            app_url: app_url.trim_end_matches('/').to_string(),
            api_key,
            password,
            session_secret,
            loki_webhook_secret: secret(get, "LOKI_WEBHOOK_SECRET", 8)?,
            grafana_hmac_secret: secret(get, "GRAFANA_WEBHOOK_HMAC_SECRET", 8)?,
            grafana_signature_header: nonempty(get, "GRAFANA_WEBHOOK_SIGNATURE_HEADER")
                .unwrap_or_else(|| "X-Grafana-Alerting-Signature".into()),
            grafana_timestamp_header: nonempty(get, "GRAFANA_WEBHOOK_TIMESTAMP_HEADER")
                .unwrap_or_else(|| "X-Grafana-Alerting-Timestamp".into()),
            sentry_client_secret: secret(get, "SENTRY_CLIENT_SECRET", 8)?,
            github_webhook_secret: secret(get, "GITHUB_WEBHOOK_SECRET", 8)?,
            metrics_public: flag(get, "METRICS_PUBLIC", false)?,
            agent_webhook_allow_private: flag(get, "AGENT_WEBHOOK_ALLOW_PRIVATE", false)?,
            slack: slack_config(get)?,
            notifications_enabled: dispatch_core::outbox::slack::notifications_enabled(
                get("NOTIFICATIONS_ENABLED").as_deref(),
            ),
            internal_slack_channel: nonempty(get, "INTERNAL_SLACK_CHANNEL_ID"),
            max_agent_cost_per_run: match nonempty(get, "MAX_AGENT_COST_PER_RUN") {
                None => 25.0,
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .ok_or_else(|| {
                        Error::invalid(
                            "MAX_AGENT_COST_PER_RUN",
                            format!("MAX_AGENT_COST_PER_RUN={v:?} must be a non-negative number of dollars"),
                        )
                    })?,
            },
            event_webhooks: event_webhooks(get)?,
            outbox_retention_days: bounded(get, "OUTBOX_RETENTION_DAYS", 7, 0, 3650)?,
            mcp_allowed_hosts: nonempty(get, "MCP_ALLOWED_HOSTS")
                .map(|v| {
                    v.split(',')
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            workers: flag(get, "DISPATCH_WORKERS", true)?,
            trusted_proxies: match nonempty(get, "TRUSTED_PROXIES") {
                None => Vec::new(),
                Some(v) => v
                    .split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(|x| {
                        crate::auth::Cidr::parse(x).ok_or_else(|| {
                            Error::invalid(
                                "TRUSTED_PROXIES",
                                format!("TRUSTED_PROXIES: {x:?} is not an address or a network like 10.0.0.0/8"),
                            )
                        })
                    })
                    .collect::<Result<_>>()?,
            },
            max_body_bytes,
            sse_keepalive,
            session_ttl_hours,
            llm,
            embeddings,
            orchestrator,
            loki_tools: dispatch_adapters::analytics::loki::LokiToolsConfig::from_lookup(get)?,
            #[cfg(feature = "postgres")]
            sql_tools: dispatch_adapters::analytics::sql::SqlToolsConfig::from_lookup(get)?,
            loki_gateway,
            brand,
            store,
            engine,
            secrets_path,
            generated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<ServerConfig> {
        let mut all: HashMap<String, String> = [
            ("DISPATCH_API_KEY", "0123456789abcdef0123"),
            ("DISPATCH_PASSWORD", "correct-horse"),
            (
                "DISPATCH_SESSION_SECRET",
                "0123456789abcdef0123456789abcdef",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in vars {
            all.insert(k.to_string(), v.to_string());
        }
        ServerConfig::from_lookup(&|k: &str| all.get(k).cloned())
    }

    fn field(r: Result<ServerConfig>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.field().unwrap_or_default().to_string(),
        }
    }

    #[test]
    fn slack_is_on_with_a_token_unless_notifications_are_false() {
        let off = config(&[]).expect("config");
        assert!(off.slack.is_none());
        assert_eq!(off.outbox().slack, None, "no token, no Slack");
        for v in ["", "true", "TRUE", "1", "yes", "no", "disabled"] {
            let c = config(&[
                ("SLACK_BOT_TOKEN", "xoxb-1"),
                ("NOTIFICATIONS_ENABLED", v),
                ("INTERNAL_SLACK_CHANNEL_ID", "C0TEAM"),
                ("DISPATCH_APP_URL", "https://d.example.com/"),
            ])
            .expect("config");
            let r = c
                .outbox()
                .slack
                .unwrap_or_else(|| panic!("{v:?} leaves them on"));
            assert_eq!(r.internal_channel.as_deref(), Some("C0TEAM"));
            assert_eq!(r.app_url, "https://d.example.com");
            assert_eq!(r.max_cost_per_run_usd, 25.0);
        }
        for v in ["false", "FALSE", "False"] {
            let c = config(&[("SLACK_BOT_TOKEN", "xoxb-1"), ("NOTIFICATIONS_ENABLED", v)])
                .expect("config");
            assert_eq!(c.outbox().slack, None, "{v:?} turns them off");
        }
        let no_internal = config(&[("SLACK_BOT_TOKEN", "xoxb-1")]).expect("config");
        assert_eq!(
            no_internal.outbox().slack.expect("on").internal_channel,
            None
        );
        let c = config(&[
            ("SLACK_BOT_TOKEN", "xoxb-1"),
            ("SLACK_API_BASE_URL", "http://127.0.0.1:9/api/"),
            ("MAX_AGENT_COST_PER_RUN", "10"),
        ])
        .expect("config");
        assert_eq!(
            c.slack.as_ref().expect("slack").base_url,
            "http://127.0.0.1:9/api"
        );
        assert_eq!(c.outbox().slack.expect("on").max_cost_per_run_usd, 10.0);
        assert_eq!(
            config(&[("SLACK_BOT_TOKEN", "xoxb-1")])
                .expect("config")
                .slack
                .expect("slack")
                .base_url,
            "https://slack.com/api"
        );
    }

    #[test]
    fn embeddings_are_on_with_an_openai_key_and_validated() {
        assert!(config(&[]).expect("config").embeddings.is_none());
        let c = config(&[("OPENAI_API_KEY", "sk-1")])
            .expect("config")
            .embeddings
            .expect("on");
        assert_eq!(
            (c.base_url.as_str(), c.model.as_str(), c.dimensions),
            ("https://api.openai.com/v1", "text-embedding-3-small", 1536)
        );
        let c = config(&[
            ("OPENAI_API_KEY", "sk-1"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("OPENAI_EMBEDDING_MODEL", "text-embedding-3-large"),
            ("OPENAI_EMBEDDING_DIMENSIONS", "256"),
        ])
        .expect("config")
        .embeddings
        .expect("on");
        assert_eq!(
            (c.base_url.as_str(), c.model.as_str(), c.dimensions),
            ("http://127.0.0.1:9/v1", "text-embedding-3-large", 256)
        );
        for (k, v) in [
            ("OPENAI_EMBEDDING_DIMENSIONS", "0"),
            ("OPENAI_EMBEDDING_DIMENSIONS", "1.5"),
            ("OPENAI_BASE_URL", "api.openai.com"),
            ("OPENAI_API_KEY", "sk 1"),
        ] {
            let mut vars = vec![("OPENAI_API_KEY", "sk-1")];
            vars.push((k, v));
            assert_eq!(field(config(&vars)), k, "{k}={v}");
        }
    }

    #[test]
    fn outbox_retention_is_a_week_by_default_and_zero_keeps_forever() {
        let c = config(&[]).expect("config");
        assert_eq!(c.outbox().retention, Some(chrono::Duration::days(7)));
        let c = config(&[("OUTBOX_RETENTION_DAYS", "30")]).expect("config");
        assert_eq!(c.outbox().retention, Some(chrono::Duration::days(30)));
        let c = config(&[("OUTBOX_RETENTION_DAYS", "0")]).expect("config");
        assert_eq!(c.outbox().retention, None);
        for bad in ["-1", "a week", "3651"] {
            assert_eq!(
                field(config(&[("OUTBOX_RETENTION_DAYS", bad)])),
                "OUTBOX_RETENTION_DAYS",
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert_eq!(
            field(config(&[
                ("SLACK_BOT_TOKEN", "xoxb-1"),
                ("SLACK_API_BASE_URL", "slack.com/api")
            ])),
            "SLACK_API_BASE_URL"
        );
        assert_eq!(
            field(config(&[("SLACK_BOT_TOKEN", "xoxb 1")])),
            "SLACK_BOT_TOKEN"
        );
        assert_eq!(
            field(config(&[("MAX_AGENT_COST_PER_RUN", "-1")])),
            "MAX_AGENT_COST_PER_RUN"
        );
        assert_eq!(
            field(config(&[("EVENT_WEBHOOK_URLS", "https://h.example.com/x")])),
            "EVENT_WEBHOOK_SECRET"
        );
        assert_eq!(
            field(config(&[
                ("EVENT_WEBHOOK_URLS", "https://h.example.com/x"),
                ("EVENT_WEBHOOK_SECRET", "0123456789abcdef"),
                ("EVENT_WEBHOOK_EVENTS", "ISSUE_CREATED,ISSUE_EXPLODED"),
            ])),
            "EVENT_WEBHOOK_EVENTS"
        );
        assert_eq!(
            field(config(&[
                ("EVENT_WEBHOOK_URLS", "ftp://h.example.com/x"),
                ("EVENT_WEBHOOK_SECRET", "0123456789abcdef"),
            ])),
            "EVENT_WEBHOOK_URLS"
        );
    }

    #[test]
    fn event_webhooks_subscribe_each_url_to_the_listed_events() {
        let c = config(&[
            (
                "EVENT_WEBHOOK_URLS",
                "https://a.example.com/x, https://b.example.com/y,https://a.example.com/x",
            ),
            ("EVENT_WEBHOOK_SECRET", "0123456789abcdef"),
            ("EVENT_WEBHOOK_EVENTS", "issue_created,STATUS_CHANGED"),
        ])
        .expect("config");
        let subs = c.outbox().subscriptions;
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[1].url, "https://b.example.com/y");
        assert_eq!(subs[0].secret, "0123456789abcdef");
        assert_eq!(
            subs[0].events,
            [
                dispatch_core::outbox::events::WebhookEvent::IssueCreated,
                dispatch_core::outbox::events::WebhookEvent::StatusChanged
            ]
        );
        let all = config(&[
            ("EVENT_WEBHOOK_URLS", "https://a.example.com/x"),
            ("EVENT_WEBHOOK_SECRET", "0123456789abcdef"),
        ])
        .expect("config");
        assert_eq!(all.outbox().subscriptions[0].events.len(), 6);
    }
}
