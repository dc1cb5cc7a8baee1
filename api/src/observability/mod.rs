//! Observability: Prometheus metrics at `/metrics`, the request window behind
//! `/api/v1/system/health`, and alerts.
//!
//! # Layout
//! - [`metrics`]: the registry and its text exposition.
//! - [`http`]: the request middleware and the route templates that label requests.
//! - [`window`]: the sliding window of outcomes (error rate, average response time).
//! - [`alerts`]: evaluation, `system.alert` events, the webhook.
//! - Trace export ([`mcp_shared::otlp`]) starts here when `OTEL_EXPORTER_OTLP_ENDPOINT` is set;
//!   [`http`] records a server span per request.
//!
//! Task, pipeline and agent figures come from the event bus, which every API replica reads in
//! full ([`spawn`] follows it); queue, task and agent counts are read from the database and the
//! agent directory at scrape time.

pub mod alerts;
pub mod http;
pub mod metrics;
pub mod window;

use std::sync::Arc;

use mcp_shared::{
    Settings,
    auth::Permission,
    db::tasks,
    domain::event::{Event, EventType},
};
use poem::{
    IntoResponse, Request, Response, handler,
    http::{StatusCode, header},
    web::Data,
};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::{directory, error::ApiError, routes::queues, state::AppState};

/// What the application state holds for observability.
#[derive(Debug)]
pub struct Observability {
    pub metrics: metrics::Metrics,
    /// This replica's requests over `MCP_HEALTH_WINDOW_MS`.
    pub requests: window::Window,
    pub routes: &'static http::RouteTemplates,
    pub alerts: alerts::Alerts,
    /// This replica's name in alerts.
    pub replica: String,
}

impl Observability {
    /// Built before serving; the webhook sender (if configured) runs until `shutdown`.
    pub fn new(settings: &Settings, shutdown: &CancellationToken) -> Arc<Self> {
        let webhook = settings
            .alert_webhook_url
            .clone()
            .map(|url| alerts::spawn_webhook(url, shutdown.clone()));
        if let Some(endpoint) = &settings.otel_endpoint {
            mcp_shared::otlp::init(endpoint, "mcp-api", shutdown.clone());
        }
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "mcp-api".into());
        Arc::new(Self {
            metrics: metrics::Metrics::default(),
            requests: window::Window::new(settings.health_window),
            routes: crate::routes::templates::global(),
            alerts: alerts::Alerts::new(settings.health_window, webhook),
            replica: format!(
                "{host}:{}:{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
        })
    }

    /// Folds one event into the metrics and the agent anomaly checks.
    fn observe(&self, event: &Event) {
        let data = &event.data;
        match event.kind {
            EventType::TaskCompleted => {
                if let (Some(t), Some(ms)) = (data["type"].as_str(), data["duration_ms"].as_i64()) {
                    self.metrics.task_completed(t, ms.max(0) as f64 / 1000.0);
                }
                if let Some(agent) = event.agent_id {
                    self.alerts.observe_agent(agent, false, Some(false));
                }
            }
            EventType::TaskFailed | EventType::TaskDead => {
                if event.kind == EventType::TaskDead {
                    self.metrics.task_dead();
                } else {
                    self.metrics.task_retried();
                }
                if let Some(agent) = event.agent_id {
                    self.alerts.observe_agent(agent, false, Some(true));
                }
            }
            EventType::StageCompleted => {
                if let Some(stage) = data["stage"].as_str() {
                    self.metrics.stage_completed(
                        stage,
                        data["records_in"].as_u64().unwrap_or(0),
                        data["records_out"].as_u64().unwrap_or(0),
                    );
                }
            }
            EventType::AgentStatusUpdated => {
                let agent = data["agent_id"]
                    .as_str()
                    .and_then(|s| uuid::Uuid::parse_str(s).ok());
                if let Some(agent) = agent
                    && data["status"] != data["previous_status"]
                {
                    self.alerts.observe_agent(agent, true, None);
                }
            }
            EventType::SystemAlert => self.alerts.mirror(&self.replica, event),
            _ => {}
        }
    }
}

/// Follows the event bus into the metrics, and evaluates alerts, until `shutdown`.
pub fn spawn(state: AppState, shutdown: CancellationToken) {
    let obs = state.observability.clone();
    let mut events = state.bus.subscribe();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                _ = stop.cancelled() => return,
            };
            match event {
                Ok(event) => obs.observe(&event),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "metrics fell behind the event bus; figures undercount"
                    )
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    alerts::spawn_evaluator(state, shutdown);
}

/// Reads the cluster-wide gauges: one grouped count of the tasks (the same one behind
/// `GET /api/v1/queues`) and the agent directory.
async fn cluster_snapshot(state: &AppState) -> mcp_shared::Result<metrics::ClusterSnapshot> {
    let counts = tasks::counts_by_queue(&state.db.conn).await?;
    let mut snapshot = metrics::ClusterSnapshot::default();
    for (_, status, n) in &counts {
        *snapshot.tasks_by_status.entry(status.clone()).or_insert(0) += n;
    }
    for q in queues::views_from_counts(state, &counts).await {
        for (tier, n) in [
            ("critical", q.pending.critical),
            ("high", q.pending.high),
            ("medium", q.pending.medium),
            ("low", q.pending.low),
        ] {
            snapshot.queue_depth.push((q.capability.clone(), tier, n));
        }
    }
    let agents = state
        .directory
        .discover(&directory::Query {
            limit: usize::MAX,
            ..Default::default()
        })
        .await;
    for a in agents {
        *snapshot
            .agents_by_status
            .entry(a.status.as_str().to_string())
            .or_insert(0) += 1;
    }
    Ok(snapshot)
}

/// True for `Authorization: Bearer <MCP_METRICS_TOKEN>`, compared in constant time.
fn is_metrics_token(state: &AppState, header: &str) -> bool {
    let Some(token) = &state.settings.metrics_token else {
        return false;
    };
    let Some(given) = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.expose().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /metrics`: Prometheus text format. Not open like `/health`: the contract opens only the
/// probes and login, and queue names and volumes are operational detail. Scrape with
/// `MCP_METRICS_TOKEN` as a bearer token, or a user token with `system.read`.
#[handler]
pub async fn metrics_endpoint(req: &Request, state: Data<&AppState>) -> Response {
    let header = req.header("authorization").unwrap_or_default();
    if !is_metrics_token(&state, header) {
        let allowed = if header.is_empty() {
            Err(ApiError::unauthorized(
                "missing credentials: send `Authorization: Bearer <MCP_METRICS_TOKEN or a token with system.read>`",
            ))
        } else {
            crate::auth::resolve(&state, header)
                .await
                .and_then(|p| p.require(Permission::SystemRead))
        };
        if let Err(e) = allowed {
            return e.into_response();
        }
    }
    let leader = state.dispatcher.is_leader();
    let cluster = if leader {
        match cluster_snapshot(&state).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cluster figures unavailable");
                return ApiError::unavailable("database").into_response();
            }
        }
    } else {
        None
    };
    let obs = &state.observability;
    let body = obs.metrics.render(
        state.connections.current(),
        &obs.alerts.owned_by_kind(&obs.replica, leader),
        cluster.as_ref(),
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(body)
}
