//! Typed settings, loaded once from the environment (names and defaults of the original design).

use std::{fmt, time::Duration};

use crate::{Error, Result, crypto::KeyRing};

/// A string that must never be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The only way to read the value; grep for `expose` to find every use.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// Every setting of the service. Built by [`Settings::from_env`]; tests build it from a map.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `MCP_HOST`: the address the HTTP server binds.
    pub host: String,
    /// `MCP_PORT`: 0 picks a free port (the bound address is logged).
    pub port: u16,
    /// `MCP_PORT_FILE`: once the server has bound its port, it writes the bound address
    /// (`host:port`) to this file, so whoever started it with `MCP_PORT=0` can find it.
    pub port_file: Option<std::path::PathBuf>,
    /// `MCP_ENV`: production refuses to start without real secrets and logs JSON.
    pub environment: Environment,
    /// `MCP_SECRET_KEY`: root of the keys for field encryption and agent-key hashing.
    pub secret_key: Secret,
    /// `JWT_SECRET_KEY`: HMAC key for access and refresh tokens.
    pub jwt_secret_key: Secret,
    /// True when one of the two secrets above was generated (development) and is not kept
    /// anywhere: it dies with the process (an in-memory database has nowhere to keep it).
    pub ephemeral_secrets: bool,
    /// Where the secrets generated in development are kept (beside a SQLite database file, or
    /// in `MCP_STATE_DIR` for another database), so that a restart keeps tokens, agent keys,
    /// sealed fields and the audit chain's key. Set by [`Settings::from_env`].
    pub secrets_file: Option<std::path::PathBuf>,
    /// `JWT_ACCESS_TOKEN_EXPIRES` in seconds.
    pub jwt_access_ttl: Duration,
    /// `JWT_REFRESH_TOKEN_EXPIRES` in seconds.
    pub jwt_refresh_ttl: Duration,
    /// `DATABASE_URL`: SQLite file by default, or `postgres://…` (may carry a password).
    pub database_url: Secret,
    /// `REDIS_URL`: unset means the embedded (SQLite) queue and the in-process event bus.
    pub redis_url: Option<Secret>,
    /// `MCP_EMBEDDED_WORKERS`: run the workers inside the API process (default: true without Redis).
    pub embedded_workers: bool,
    /// `MCP_EMBEDDED_CAPABILITIES`: what the embedded workers serve, comma-separated (`generic`,
    /// the typed task types' capabilities, `stage_*`); unset means all of them. Tasks needing a
    /// capability left out wait for an external agent.
    pub embedded_capabilities: Option<Vec<String>>,
    /// `ENCRYPT_AGENT_DATA`: seal a registered agent's whole `configuration` and `metadata` at
    /// rest (the secret configuration fields are sealed whatever its value).
    pub encrypt_agent_data: bool,
    /// `AGENT_DATA_RETENTION_DAYS`: finished tasks' payloads and results, and the data of agents
    /// gone offline or deregistered, are purged after this long (days, fractions allowed; 0 keeps
    /// them forever).
    pub agent_data_retention: Option<Duration>,
    /// `MCP_AUDIT_RETENTION_DAYS`: audit records are purged after this long (days, fractions
    /// allowed; default six years; 0 keeps them forever).
    pub audit_retention: Option<Duration>,
    /// `MCP_RETENTION_INTERVAL_SECS`: how often the retention purge runs.
    pub retention_interval: Duration,
    /// `MCP_AUDIT_CHECKPOINT_SECS`: how often the audit chain's signed head is also written to
    /// the artifact store (0: never).
    pub audit_checkpoint_interval: Option<Duration>,
    /// `MCP_ENCRYPTION_KEYS`: `id:base64key,…` (32-byte AES keys); the first seals, all open.
    /// Unset: one key derived from `MCP_SECRET_KEY`.
    pub encryption_keys: Option<Secret>,
    /// `MCP_RATE_LIMIT_PER_MINUTE`: requests per minute per user or agent (0: no limit).
    pub rate_limit_per_minute: u32,
    /// `MCP_LOGIN_RATE_LIMIT_PER_MINUTE`: login attempts per minute per client IP (0: no limit).
    pub login_rate_limit_per_minute: u32,
    /// `MCP_LOGIN_MAX_FAILURES`: failed logins for one username before it is locked out, for a
    /// period that doubles with each further failure (0: no lockout).
    pub login_max_failures: u32,
    /// `MCP_READ_TIMEOUT_SECS`: how long a client may take to send its request headers, and
    /// between two pieces of its body, before the connection is dropped.
    pub read_timeout: Duration,
    /// `MCP_IDLE_TIMEOUT_SECS`: how long a connection may stay open with no request in progress
    /// (HTTP/1 keep-alive between requests, HTTP/2 with no open stream) before it is closed.
    pub idle_timeout: Duration,
    /// `MCP_MAX_CONNECTIONS`: open TCP connections on this replica (HTTP and WebSocket); further
    /// connections are closed as soon as they are accepted. 0: no limit.
    pub max_connections: usize,
    /// `MCP_PREAUTH_LIMIT`: requests per client address and window that end unauthenticated and
    /// refused (no or bad credentials, unknown routes, failed logins) before every request from
    /// that address is refused with 429, ahead of authentication. 0: no limit.
    pub preauth_limit: u32,
    /// `MCP_PREAUTH_WINDOW_SECS`: the window of `MCP_PREAUTH_LIMIT`, and how long repeated
    /// anonymous denials from one address are gathered into one audit record.
    pub preauth_window: Duration,

    /// `MAX_AGENT_CONNECTIONS`: concurrent WebSocket connections.
    pub max_agent_connections: usize,
    /// `MCP_WS_PING_MS`: how often idle WebSocket connections are pinged; two silent intervals
    /// close the connection.
    pub ws_ping_interval: Duration,
    /// `MCP_CORS_ORIGINS`: origins allowed to call the API from a browser (comma-separated).
    /// Empty (the default): no CORS headers, so browsers refuse cross-origin calls.
    pub cors_origins: Vec<String>,
    /// `MCP_TRUSTED_PROXIES`: comma-separated addresses of reverse proxies / load balancers whose
    /// `X-Forwarded-For` names the client (for login limits and the audit trail). Unset: the
    /// peer address is the client, and the header is ignored (a client could forge it).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// `MCP_DOCS`: serve `/docs` and `/openapi.json` (default true; production may turn it off).
    pub docs_enabled: bool,
    /// `MCP_DASHBOARD`: serve the operator dashboard at `/dashboard` (default true).
    pub dashboard_enabled: bool,
    /// `AGENT_ASSIGNMENT_TIMEOUT` in seconds.
    pub agent_assignment_timeout: Duration,
    /// `TASK_EXECUTION_TIMEOUT` in seconds: default `timeout_seconds` of a task.
    pub task_execution_timeout: Duration,
    /// `CACHE_TTL_SECONDS`: the longest an API replica serves an agent from its in-memory
    /// directory (discovery, assignment) without reading it again in full from the database.
    pub cache_ttl: Duration,
    /// `ENABLE_DETAILED_METRICS`.
    pub enable_detailed_metrics: bool,
    /// `ALERT_THRESHOLD_ERROR_RATE` (0..1).
    pub alert_threshold_error_rate: f64,
    /// `ALERT_THRESHOLD_RESPONSE_TIME` in milliseconds.
    pub alert_threshold_response_time: Duration,
    /// `MCP_HEALTH_WINDOW_MS`: the sliding window of requests behind `/system/health` and the
    /// request-rate alerts (default 60 s).
    pub health_window: Duration,
    /// `MCP_ALERT_MIN_REQUESTS`: fewer requests than this in the window never raise an error-rate
    /// or response-time alert, so one slow call on an idle replica is not an incident.
    pub alert_min_requests: u64,
    /// `MCP_ALERT_INTERVAL_MS`: how often alert conditions are evaluated (default 1 s).
    pub alert_interval: Duration,
    /// `MCP_ALERT_QUEUE_AGE_MS`: a queue whose oldest waiting task is older than this raises an
    /// alert (default 5 minutes).
    pub alert_queue_age: Duration,
    /// `MCP_ALERT_UNSERVED_AFTER_MS`: work waiting this long on a capability no live worker or
    /// agent holds raises `queue_unserved` and shows `waiting_for` (default 30 s).
    pub alert_unserved_after: Duration,
    /// `MCP_ALERT_AGENT_FAILURE_RATE`: an agent whose share of failed attempts in the window
    /// exceeds this (over at least 5 attempts) raises an alert (default 0.5).
    pub alert_agent_failure_rate: f64,
    /// `MCP_ALERT_AGENT_FLAPS`: this many status changes of one agent in the window raise a
    /// flapping alert (default 4).
    pub alert_agent_flaps: u32,
    /// `ALERT_THRESHOLD_EFFICIENCY` (0..1): an agent whose efficiency over the health window
    /// (successful busy time over busy time) falls below this raises an alert (default 0.8).
    pub alert_threshold_efficiency: f64,
    /// `ALERT_WEBHOOK_URL`: alerts are also POSTed here (JSON), with retries. May embed a token,
    /// so it is never printed.
    pub alert_webhook_url: Option<Secret>,
    /// `MCP_METRICS_TOKEN`: a bearer token that may read `/metrics` (for Prometheus'
    /// `authorization` setting); without it, `/metrics` needs a user with `system.read`.
    pub metrics_token: Option<Secret>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: an OTLP/HTTP collector (e.g. `http://collector:4318`);
    /// set, the API and the workers export trace spans there as JSON.
    pub otel_endpoint: Option<String>,
    /// `MCP_ARTIFACT_STORE`: a directory, or later an `s3://` URL.
    pub artifact_store: String,
    /// `MCP_STATE_DIR`: this machine's own working files (the worker's delivery log). Local to
    /// each host or pod, never shared between them.
    pub state_dir: std::path::PathBuf,
    /// `MCP_MAX_BODY_BYTES`: request bodies above this get 413.
    pub max_body_bytes: usize,
    /// Largest dataset `POST /datasets` accepts (`MCP_MAX_DATASET_BYTES`, default 1 GiB).
    pub max_dataset_bytes: u64,
    /// `MCP_WORKER_CONCURRENCY`: execution slots of one worker process, shared by its queues.
    pub worker_concurrency: usize,
    /// `MCP_QUEUE_POLL_MS`: how often an idle worker looks for jobs it was not woken for
    /// (pushes wake idle workers at once; this bounds pickup of scheduled jobs).
    pub queue_poll_interval: Duration,
    /// `MCP_WORKER_HEARTBEAT_MS`: a worker process's heartbeat, to the queue backend and as an
    /// agent; after `MCP_WORKER_MISSED_HEARTBEATS` missed ones its fetched jobs return to the
    /// queue, and after `MCP_AGENT_STALE_AFTER_MISSED` its running attempts are released.
    /// `MCP_WORKER_PORT`: a worker process serves `/health`, `/ready` and `/metrics` on this
    /// port of `MCP_HOST` (unset: no port; several workers on one host need one each).
    pub worker_port: Option<u16>,
    pub worker_heartbeat: Duration,
    /// `MCP_WORKER_MISSED_HEARTBEATS`.
    pub worker_missed_heartbeats: usize,
    /// `MCP_STARVATION_MS`: a job waiting this long for an execution slot is served before more
    /// urgent tiers, so low-priority work still moves under sustained urgent load.
    pub starvation_after: Duration,
    /// `MCP_REDELIVER_AFTER_MS`: when a queue backend holds fewer jobs than were pushed to it, the
    /// ones pushed this long ago whose task never started are presumed lost (say, pushed by an
    /// API process that died before the push reached the backend) and pushed again.
    pub redeliver_after: Duration,
    /// `MCP_AGENT_HEARTBEAT_MS`: how often agents (and worker processes) are expected to beat.
    pub agent_heartbeat: Duration,
    /// `MCP_AGENT_STALE_AFTER_MISSED`: missed beats before an agent is `stale` (default 3).
    pub agent_stale_after_missed: u32,
    /// `MCP_AGENT_OFFLINE_AFTER_MISSED`: missed beats before a stale agent is `offline` (default 10).
    pub agent_offline_after_missed: u32,
}

impl Settings {
    /// Reads the process environment. Call once at start and pass the result down.
    /// In development, secrets that are not set are generated once and kept in a file (mode
    /// 0600) beside the database, then reused by every later start and by every command.
    pub fn from_env() -> Result<Self> {
        let lookup = |name: &str| std::env::var(name).ok();
        let mut settings = Self::from_lookup(lookup)?;
        settings.keep_generated_secrets(lookup)?;
        Ok(settings)
    }

    /// Where generated development secrets live: beside a SQLite database file
    /// (`./data/mcp.db` → `./data/mcp.db.secrets`), or in `MCP_STATE_DIR` for another database.
    /// `None` for an in-memory database, whose data does not outlive the process either.
    pub fn generated_secrets_path(&self) -> Option<std::path::PathBuf> {
        match sqlite_file(self.database_url.expose()) {
            Some(Some(file)) => {
                let mut name = file.into_os_string();
                name.push(".secrets");
                Some(name.into())
            }
            Some(None) => None,
            None => Some(self.state_dir.join("generated.secrets")),
        }
    }

    /// Where a single node publishes the audit chain's signed head, beside its SQLite database
    /// file (`./data/mcp.db` → `./data/mcp.db.audit-head`). `None` for another database (the
    /// distributed mode publishes it in Redis) or an in-memory one.
    pub fn audit_head_path(&self) -> Option<std::path::PathBuf> {
        let mut name = sqlite_file(self.database_url.expose())??.into_os_string();
        name.push(".audit-head");
        Some(name.into())
    }

    /// Where a single node keeps its revoked tokens and login lockouts across restarts, beside
    /// its SQLite database file (`./data/mcp.db` → `./data/mcp.db.revocations`). `None` for
    /// another database (the distributed mode keeps them in Redis) or an in-memory one.
    pub fn security_flags_path(&self) -> Option<std::path::PathBuf> {
        let mut name = sqlite_file(self.database_url.expose())??.into_os_string();
        name.push(".revocations");
        Some(name.into())
    }

    /// Replaces the secrets [`Settings::from_lookup`] generated for this process with the ones
    /// kept in [`Settings::generated_secrets_path`], generating and keeping them on first use.
    fn keep_generated_secrets(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        if !self.ephemeral_secrets || self.environment == Environment::Production {
            return Ok(());
        }
        let Some(path) = self.generated_secrets_path() else {
            return Ok(());
        };
        let kept = kept_secrets::load_or_create(&path, &GENERATED_SECRETS)?;
        let unset = |name: &str| get(name).is_none_or(|v| v.trim().is_empty());
        for (name, value) in kept {
            match name.as_str() {
                "MCP_SECRET_KEY" if unset("MCP_SECRET_KEY") => self.secret_key = Secret::new(value),
                "JWT_SECRET_KEY" if unset("JWT_SECRET_KEY") => {
                    self.jwt_secret_key = Secret::new(value)
                }
                _ => {}
            }
        }
        self.ephemeral_secrets = false;
        self.secrets_file = Some(path);
        Ok(())
    }

    /// Builds settings from any lookup function (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let environment = match var("MCP_ENV").as_deref() {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                return Err(Error::Config(format!(
                    "MCP_ENV must be development or production, got {other:?}"
                )));
            }
        };
        let mut ephemeral_secrets = false;
        let mut secret = |name: &str| -> Result<Secret> {
            match var(name) {
                Some(v) if environment == Environment::Production && v.len() < 32 => {
                    Err(Error::Config(format!(
                        "{name} must be at least 32 characters in production"
                    )))
                }
                Some(v) => Ok(Secret::new(v)),
                None if environment == Environment::Production => Err(Error::Config(format!(
                    "{name} is required when MCP_ENV=production"
                ))),
                None => {
                    ephemeral_secrets = true;
                    Ok(Secret::new(crate::crypto::random_token(32)))
                }
            }
        };
        let secret_key = secret("MCP_SECRET_KEY")?;
        let jwt_secret_key = secret("JWT_SECRET_KEY")?;

        if let Some(alg) = var("JWT_ALGORITHM")
            && alg != "HS256"
        {
            return Err(Error::Config(format!(
                "JWT_ALGORITHM must be HS256 (the only algorithm this server signs with), got {alg:?}"
            )));
        }
        let worker_heartbeat = Duration::from_millis(parse(&var, "MCP_WORKER_HEARTBEAT_MS", 1000)?);
        if worker_heartbeat < Duration::from_secs(1) {
            // The queue library compares worker heartbeats in whole seconds: a shorter period
            // makes live workers look dead to each other.
            return Err(Error::Config(
                "MCP_WORKER_HEARTBEAT_MS must be at least 1000".into(),
            ));
        }
        let ws_ping_interval = Duration::from_millis(parse(&var, "MCP_WS_PING_MS", 30_000)?);
        if ws_ping_interval < Duration::from_millis(100) {
            return Err(Error::Config("MCP_WS_PING_MS must be at least 100".into()));
        }
        let alert_threshold_error_rate: f64 = parse(&var, "ALERT_THRESHOLD_ERROR_RATE", 0.05)?;
        if !(alert_threshold_error_rate > 0.0 && alert_threshold_error_rate <= 1.0) {
            return Err(Error::Config(format!(
                "ALERT_THRESHOLD_ERROR_RATE must be a share between 0 (exclusive) and 1, got {alert_threshold_error_rate}"
            )));
        }
        let alert_threshold_response_time: u64 = parse(&var, "ALERT_THRESHOLD_RESPONSE_TIME", 50)?;
        if alert_threshold_response_time == 0 {
            return Err(Error::Config(
                "ALERT_THRESHOLD_RESPONSE_TIME must be at least 1 (milliseconds)".into(),
            ));
        }
        let health_window = Duration::from_millis(parse(&var, "MCP_HEALTH_WINDOW_MS", 60_000)?);
        if health_window < Duration::from_millis(100) {
            return Err(Error::Config(
                "MCP_HEALTH_WINDOW_MS must be at least 100".into(),
            ));
        }
        let alert_interval = Duration::from_millis(parse(&var, "MCP_ALERT_INTERVAL_MS", 1000)?);
        if alert_interval < Duration::from_millis(10) {
            return Err(Error::Config(
                "MCP_ALERT_INTERVAL_MS must be at least 10".into(),
            ));
        }
        let alert_agent_failure_rate: f64 = parse(&var, "MCP_ALERT_AGENT_FAILURE_RATE", 0.5)?;
        if !(alert_agent_failure_rate > 0.0 && alert_agent_failure_rate <= 1.0) {
            return Err(Error::Config(format!(
                "MCP_ALERT_AGENT_FAILURE_RATE must be a share between 0 (exclusive) and 1, got {alert_agent_failure_rate}"
            )));
        }
        let alert_agent_flaps: u32 = parse(&var, "MCP_ALERT_AGENT_FLAPS", 4)?;
        if alert_agent_flaps < 2 {
            return Err(Error::Config(
                "MCP_ALERT_AGENT_FLAPS must be at least 2".into(),
            ));
        }
        let alert_threshold_efficiency: f64 = parse(&var, "ALERT_THRESHOLD_EFFICIENCY", 0.8)?;
        if !(alert_threshold_efficiency > 0.0 && alert_threshold_efficiency <= 1.0) {
            return Err(Error::Config(format!(
                "ALERT_THRESHOLD_EFFICIENCY must be a share between 0 (exclusive) and 1, got {alert_threshold_efficiency}"
            )));
        }
        let alert_webhook_url = match var("ALERT_WEBHOOK_URL") {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                Some(Secret::new(url.trim()))
            }
            // The value may carry a token: name the variable, not the value.
            Some(_) => {
                return Err(Error::Config(
                    "ALERT_WEBHOOK_URL must be an http:// or https:// URL".into(),
                ));
            }
            None => None,
        };
        let metrics_token = var("MCP_METRICS_TOKEN").map(Secret::new);
        if metrics_token
            .as_ref()
            .is_some_and(|t| t.expose().len() < 16)
        {
            return Err(Error::Config(
                "MCP_METRICS_TOKEN must be at least 16 characters".into(),
            ));
        }
        let otel_endpoint = match var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                Some(url.trim().to_string())
            }
            Some(url) => {
                return Err(Error::Config(format!(
                    "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL (OTLP over HTTP), got {url:?}"
                )));
            }
            None => None,
        };
        let redis_url = var("REDIS_URL").map(Secret::new);
        let embedded_default = redis_url.is_none();
        Ok(Self {
            host: var("MCP_HOST").unwrap_or_else(|| "0.0.0.0".into()),
            port: parse(&var, "MCP_PORT", 5001)?,
            port_file: var("MCP_PORT_FILE").map(std::path::PathBuf::from),
            environment,
            secret_key,
            jwt_secret_key,
            ephemeral_secrets,
            secrets_file: None,
            jwt_access_ttl: Duration::from_secs(parse(&var, "JWT_ACCESS_TOKEN_EXPIRES", 3600)?),
            jwt_refresh_ttl: Duration::from_secs(parse(&var, "JWT_REFRESH_TOKEN_EXPIRES", 86400)?),
            database_url: Secret::new(
                var("DATABASE_URL").unwrap_or_else(|| "sqlite://./data/mcp.db?mode=rwc".into()),
            ),
            redis_url,
            embedded_workers: parse_bool(&var, "MCP_EMBEDDED_WORKERS", embedded_default)?,
            embedded_capabilities: var("MCP_EMBEDDED_CAPABILITIES").map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect()
            }),
            encrypt_agent_data: parse_bool(&var, "ENCRYPT_AGENT_DATA", true)?,
            agent_data_retention: days(&var, "AGENT_DATA_RETENTION_DAYS", 90.0)?,
            audit_retention: days(&var, "MCP_AUDIT_RETENTION_DAYS", 6.0 * 365.0)?,
            retention_interval: Duration::from_secs(
                parse::<u64>(&var, "MCP_RETENTION_INTERVAL_SECS", 3600)?.max(1),
            ),
            audit_checkpoint_interval: match parse::<u64>(&var, "MCP_AUDIT_CHECKPOINT_SECS", 300)? {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            encryption_keys: var("MCP_ENCRYPTION_KEYS")
                .filter(|v| !v.trim().is_empty())
                .map(Secret::new),
            rate_limit_per_minute: parse(&var, "MCP_RATE_LIMIT_PER_MINUTE", 6000)?,
            login_rate_limit_per_minute: parse(&var, "MCP_LOGIN_RATE_LIMIT_PER_MINUTE", 30)?,
            login_max_failures: parse(&var, "MCP_LOGIN_MAX_FAILURES", 5)?,
            read_timeout: Duration::from_secs(
                parse::<u64>(&var, "MCP_READ_TIMEOUT_SECS", 30)?.max(1),
            ),
            idle_timeout: Duration::from_secs(
                parse::<u64>(&var, "MCP_IDLE_TIMEOUT_SECS", 75)?.max(1),
            ),
            max_connections: parse(&var, "MCP_MAX_CONNECTIONS", 10_000)?,
            preauth_limit: parse(&var, "MCP_PREAUTH_LIMIT", 300)?,
            preauth_window: Duration::from_secs(
                parse::<u64>(&var, "MCP_PREAUTH_WINDOW_SECS", 60)?.max(1),
            ),
            max_agent_connections: parse(&var, "MAX_AGENT_CONNECTIONS", 1000)?,
            ws_ping_interval,
            cors_origins: var("MCP_CORS_ORIGINS")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            trusted_proxies: match var("MCP_TRUSTED_PROXIES") {
                None => Vec::new(),
                Some(list) => list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.parse().map_err(|_| {
                            Error::Config(format!(
                                "MCP_TRUSTED_PROXIES: {s:?} is not an IP address"
                            ))
                        })
                    })
                    .collect::<Result<_>>()?,
            },
            docs_enabled: parse_bool(&var, "MCP_DOCS", true)?,
            dashboard_enabled: parse_bool(&var, "MCP_DASHBOARD", true)?,
            agent_assignment_timeout: Duration::from_secs(parse(
                &var,
                "AGENT_ASSIGNMENT_TIMEOUT",
                30,
            )?),
            task_execution_timeout: Duration::from_secs(parse(
                &var,
                "TASK_EXECUTION_TIMEOUT",
                300,
            )?),
            cache_ttl: match parse(&var, "CACHE_TTL_SECONDS", 3600)? {
                0 => {
                    return Err(Error::Config("CACHE_TTL_SECONDS must be at least 1".into()));
                }
                seconds => Duration::from_secs(seconds),
            },
            enable_detailed_metrics: parse_bool(&var, "ENABLE_DETAILED_METRICS", true)?,
            alert_threshold_error_rate,
            alert_threshold_response_time: Duration::from_millis(alert_threshold_response_time),
            health_window,
            alert_min_requests: parse(&var, "MCP_ALERT_MIN_REQUESTS", 20)?,
            alert_interval,
            alert_queue_age: Duration::from_millis(parse(&var, "MCP_ALERT_QUEUE_AGE_MS", 300_000)?),
            alert_unserved_after: Duration::from_millis(parse(
                &var,
                "MCP_ALERT_UNSERVED_AFTER_MS",
                30_000,
            )?),
            alert_agent_failure_rate,
            alert_agent_flaps,
            alert_threshold_efficiency,
            alert_webhook_url,
            metrics_token,
            otel_endpoint,
            artifact_store: var("MCP_ARTIFACT_STORE").unwrap_or_else(|| "./data/artifacts".into()),
            state_dir: var("MCP_STATE_DIR")
                .unwrap_or_else(|| "./data/state".into())
                .into(),
            max_body_bytes: parse(&var, "MCP_MAX_BODY_BYTES", 1024 * 1024)?,
            max_dataset_bytes: parse(&var, "MCP_MAX_DATASET_BYTES", 1024 * 1024 * 1024)?,
            worker_concurrency: parse(&var, "MCP_WORKER_CONCURRENCY", 16)?,
            queue_poll_interval: Duration::from_millis(parse(&var, "MCP_QUEUE_POLL_MS", 200)?),
            worker_heartbeat,
            worker_port: match var("MCP_WORKER_PORT") {
                None => None,
                Some(raw) => Some(raw.trim().parse::<u16>().map_err(|_| {
                    Error::Config(format!(
                        "MCP_WORKER_PORT must be a port number (0-65535), got {raw:?}"
                    ))
                })?),
            },
            worker_missed_heartbeats: parse(&var, "MCP_WORKER_MISSED_HEARTBEATS", 3)?,
            starvation_after: Duration::from_millis(parse(&var, "MCP_STARVATION_MS", 2000)?),
            redeliver_after: Duration::from_millis(parse(&var, "MCP_REDELIVER_AFTER_MS", 5_000)?),
            agent_heartbeat: Duration::from_millis(parse(&var, "MCP_AGENT_HEARTBEAT_MS", 10_000)?),
            agent_stale_after_missed: parse(&var, "MCP_AGENT_STALE_AFTER_MISSED", 3)?,
            agent_offline_after_missed: parse(&var, "MCP_AGENT_OFFLINE_AFTER_MISSED", 10)?,
        })
    }

    /// Silence after which an agent is `stale`.
    pub fn agent_stale_after(&self) -> Duration {
        self.agent_heartbeat * self.agent_stale_after_missed.max(1)
    }

    /// Silence after which an agent is `offline`.
    pub fn agent_offline_after(&self) -> Duration {
        self.agent_heartbeat
            * self
                .agent_offline_after_missed
                .max(self.agent_stale_after_missed + 1)
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// True when jobs and events go through Redis (the distributed mode).
    pub fn distributed(&self) -> bool {
        self.redis_url.is_some()
    }
}

/// The secrets development mode generates when they are not set.
const GENERATED_SECRETS: [&str; 2] = ["MCP_SECRET_KEY", "JWT_SECRET_KEY"];

/// The database file a SQLite URL names: `None` when the URL is not SQLite, `Some(None)` for an
/// in-memory database.
fn sqlite_file(url: &str) -> Option<Option<std::path::PathBuf>> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        return Some(None);
    }
    Some(Some(path.into()))
}

/// Generated development secrets, kept in a file only the owner may read.
mod kept_secrets {
    use std::{collections::BTreeMap, io::Write, path::Path};

    use crate::{Error, Result};

    /// The secrets in `path` (`NAME=value` lines). When the file does not exist yet, generates
    /// `names` and writes them there first (mode 0600, created whole: two processes starting
    /// at once agree on one set).
    pub fn load_or_create(path: &Path, names: &[&str]) -> Result<BTreeMap<String, String>> {
        let unreadable = |e: std::io::Error| {
            Error::Config(format!(
                "the generated development secrets in {} cannot be used ({e}); set MCP_SECRET_KEY and JWT_SECRET_KEY, or remove the file",
                path.display()
            ))
        };
        loop {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    check_private(path)?;
                    let kept = parse(&text);
                    if let Some(missing) = names.iter().find(|n| !kept.contains_key(**n)) {
                        return Err(Error::Config(format!(
                            "{} does not hold {missing}; remove the file to generate new development secrets",
                            path.display()
                        )));
                    }
                    return Ok(kept);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(unreadable(e)),
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(unreadable)?;
            }
            let generated: BTreeMap<String, String> = names
                .iter()
                .map(|n| (n.to_string(), crate::crypto::random_token(32)))
                .collect();
            let mut partial = path.as_os_str().to_owned();
            partial.push(format!(".{}.partial", uuid::Uuid::new_v4().simple()));
            let partial = std::path::PathBuf::from(partial);
            let written = write_private(&partial, &generated).and_then(|()| {
                // A hard link never replaces an existing file: of two processes generating at
                // once, the first to link wins and the other reads what it kept.
                std::fs::hard_link(&partial, path)
            });
            let _ = std::fs::remove_file(&partial);
            match written {
                Ok(()) => return Ok(generated),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(unreadable(e)),
            }
        }
    }

    fn parse(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }

    fn write_private(path: &Path, secrets: &BTreeMap<String, String>) -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        let mut text = String::from(
            "# Generated for development by TechDeck MCP: keep private, never commit.\n",
        );
        for (name, value) in secrets {
            text.push_str(&format!("{name}={value}\n"));
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }

    /// Refuses a secrets file other users may read, as ssh refuses such a key.
    fn check_private(path: &Path) -> Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(Error::Config(format!(
                    "{} may be read by other users (mode {:o}); run `chmod 600` on it",
                    path.display(),
                    mode & 0o777
                )));
            }
        }
        Ok(())
    }
}

/// A retention period in days (fractions allowed, so tests can use seconds); 0 means forever.
fn days(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: f64,
) -> Result<Option<Duration>> {
    let d: f64 = parse(var, name, default)?;
    if !d.is_finite() || !(0.0..=36_500.0).contains(&d) {
        return Err(Error::Config(format!(
            "{name} must be a number of days between 0 and 36500"
        )));
    }
    Ok((d > 0.0).then(|| Duration::from_secs_f64(d * 86_400.0)))
}

fn parse<T: std::str::FromStr>(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T> {
    match var(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| Error::Config(format!("{name} has an invalid value {raw:?}"))),
    }
}

fn parse_bool(var: &impl Fn(&str) -> Option<String>, name: &str, default: bool) -> Result<bool> {
    match var(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
        Some(v) => Err(Error::Config(format!(
            "{name} must be true or false, got {v:?}"
        ))),
    }
}

impl KeyRing {
    /// The ring the settings describe (`MCP_SECRET_KEY`, `MCP_ENCRYPTION_KEYS`). Here, beside
    /// the settings, so that the cipher needs nothing of the configuration.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        Self::new(
            settings.secret_key.expose(),
            settings.encryption_keys.as_ref().map(|k| k.expose()),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn development_defaults_generate_ephemeral_secrets() {
        let s = settings(&[]).unwrap();
        assert!(s.ephemeral_secrets);
        assert_eq!(s.port, 5001);
        assert!(s.embedded_workers);
        assert!(!s.distributed());
        assert_eq!(s.task_execution_timeout, Duration::from_secs(300));
    }

    #[test]
    fn generated_secrets_are_kept_beside_the_database_and_reused() {
        let dir = std::env::temp_dir().join(format!("mcp-secrets-{}", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}/mcp.db?mode=rwc", dir.display());
        let load = |extra: &[(&str, &str)]| {
            let mut pairs = vec![("DATABASE_URL", url.as_str())];
            pairs.extend_from_slice(extra);
            let map: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let get = |k: &str| map.get(k).cloned();
            let mut s = Settings::from_lookup(get).unwrap();
            s.keep_generated_secrets(get).unwrap();
            s
        };
        let first = load(&[]);
        let path = dir.join("mcp.db.secrets");
        assert_eq!(first.secrets_file.as_deref(), Some(path.as_path()));
        assert!(!first.ephemeral_secrets);
        let second = load(&[]);
        assert_eq!(first.secret_key, second.secret_key, "kept across starts");
        assert_eq!(first.jwt_secret_key, second.jwt_secret_key);
        assert_ne!(first.secret_key, first.jwt_secret_key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let map: HashMap<String, String> = [("DATABASE_URL".to_string(), url.clone())].into();
            let get = |k: &str| map.get(k).cloned();
            let mut s = Settings::from_lookup(get).unwrap();
            let err = s.keep_generated_secrets(get).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{err}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        // A secret that is set wins over the kept one.
        let set = load(&[("JWT_SECRET_KEY", "from-the-environment")]);
        assert_eq!(set.jwt_secret_key.expose(), "from-the-environment");
        assert_eq!(set.secret_key, first.secret_key);
        // An in-memory database keeps nothing.
        let map: HashMap<String, String> =
            [("DATABASE_URL".to_string(), "sqlite::memory:".to_string())].into();
        let get = |k: &str| map.get(k).cloned();
        let mut mem = Settings::from_lookup(get).unwrap();
        mem.keep_generated_secrets(get).unwrap();
        assert!(mem.ephemeral_secrets && mem.secrets_file.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn two_processes_generating_at_once_agree() {
        let dir = std::env::temp_dir().join(format!("mcp-secrets-{}", uuid::Uuid::new_v4()));
        let path = dir.join("x.secrets");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    kept_secrets::load_or_create(&path, &GENERATED_SECRETS).unwrap()
                })
            })
            .collect();
        let sets: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(sets.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no partial files"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn production_names_the_missing_secret() {
        let err = settings(&[("MCP_ENV", "production")]).unwrap_err();
        assert!(err.to_string().contains("MCP_SECRET_KEY"), "{err}");
        let long = "x".repeat(40);
        let err = settings(&[("MCP_ENV", "production"), ("MCP_SECRET_KEY", &long)]).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET_KEY"), "{err}");
        let ok = settings(&[
            ("MCP_ENV", "production"),
            ("MCP_SECRET_KEY", &long),
            ("JWT_SECRET_KEY", &long),
        ])
        .unwrap();
        assert!(!ok.ephemeral_secrets);
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let s = settings(&[
            ("MCP_SECRET_KEY", "super-secret-value"),
            ("REDIS_URL", "redis://:pw@localhost"),
        ])
        .unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("super-secret-value"));
        assert!(!printed.contains(":pw@"));
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn redis_switches_workers_out_of_process_unless_asked() {
        let s = settings(&[("REDIS_URL", "redis://127.0.0.1")]).unwrap();
        assert!(s.distributed());
        assert!(!s.embedded_workers);
        let s = settings(&[
            ("REDIS_URL", "redis://127.0.0.1"),
            ("MCP_EMBEDDED_WORKERS", "true"),
        ])
        .unwrap();
        assert!(s.embedded_workers);
    }

    #[test]
    fn malformed_values_name_the_variable() {
        let err = settings(&[("MCP_PORT", "eighty")]).unwrap_err();
        assert!(err.to_string().contains("MCP_PORT"));
        let err = settings(&[("JWT_ALGORITHM", "none")]).unwrap_err();
        assert!(err.to_string().contains("JWT_ALGORITHM"));
        let err = settings(&[("MCP_WORKER_HEARTBEAT_MS", "500")]).unwrap_err();
        assert!(err.to_string().contains("MCP_WORKER_HEARTBEAT_MS"));
    }

    #[test]
    fn alert_settings_are_validated() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.alert_threshold_error_rate, 0.05);
        assert_eq!(s.alert_threshold_response_time, Duration::from_millis(50));
        assert_eq!(s.health_window, Duration::from_secs(60));
        assert!(s.alert_webhook_url.is_none());
        assert_eq!(s.alert_threshold_efficiency, 0.8);
        for (name, bad) in [
            ("ALERT_THRESHOLD_EFFICIENCY", "0"),
            ("ALERT_THRESHOLD_EFFICIENCY", "1.2"),
            ("ALERT_THRESHOLD_ERROR_RATE", "1.5"),
            ("ALERT_THRESHOLD_ERROR_RATE", "0"),
            ("ALERT_THRESHOLD_RESPONSE_TIME", "0"),
            ("MCP_HEALTH_WINDOW_MS", "10"),
            ("MCP_ALERT_INTERVAL_MS", "abc"),
            ("MCP_ALERT_AGENT_FLAPS", "1"),
            ("ALERT_WEBHOOK_URL", "ftp://hooks.example/t0ken"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
        ] {
            let err = settings(&[(name, bad)]).unwrap_err().to_string();
            assert!(err.contains(name), "{name}={bad}: {err}");
            assert!(
                !err.contains("t0ken"),
                "the webhook URL is never printed: {err}"
            );
        }
        let s = settings(&[("ALERT_WEBHOOK_URL", "https://hooks.example/t0ken")]).unwrap();
        assert!(!format!("{s:?}").contains("t0ken"));
    }
}
