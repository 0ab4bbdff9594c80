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
    /// API-only replicas; some process on the same database must run them.
    pub workers: bool,
    /// `SESSION_TTL_HOURS` (168 = 7 days).
    pub session_ttl_hours: i64,
    /// `ANTHROPIC_API_KEY` (+ `ANTHROPIC_BASE_URL`, `ORCHESTRATOR_MODEL`): Claude as the engine's
    /// LLM, which confirms PR ↔ issue matches found by similarity. `None` without a key.
    pub llm: Option<ClaudeConfig>,
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

impl ServerConfig {
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
