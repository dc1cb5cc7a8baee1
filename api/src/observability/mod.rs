//! Observability's core: the Prometheus registry behind `/metrics`, the request window behind
//! `/api/v1/system/health`, and the state of alerts. It holds figures and works them out; it
//! reads no database and publishes nothing (the monitoring service does, on its behalf).
//!
//! # Layout
//! - [`metrics`]: the registry and its text exposition.
//! - [`http`]: the request middleware, labelling each request with its route template.
//! - [`window`]: the sliding window of outcomes (error rate, average response time).
//! - [`alerts`]: the conditions, raised and cleared alerts, the webhook.
//! - [`agent_health`]: agents' efficiency, performance score and anomalies.
//! - [`errors`]: the rate limit on broadcast `error.occurred` events, and dependency outages.
//! - Trace export ([`mcp_shared::otlp`]) starts here when `OTEL_EXPORTER_OTLP_ENDPOINT` is set;
//!   [`http`] records a server span per request.
//!
//! Task, pipeline and agent figures come from the event bus, which every API replica reads in
//! full and folds in with [`Observability::observe`]; queue, task and agent counts are read from
//! the database and the agent directory at scrape time.

pub mod agent_health;
pub mod alerts;
pub mod errors;
pub mod http;
pub mod metrics;
pub mod window;

use std::sync::Arc;

use mcp_shared::{
    Settings,
    domain::event::{Event, EventType},
};
use tokio_util::sync::CancellationToken;

use crate::templates::RouteTemplates;

/// What the application state holds for observability.
#[derive(Debug)]
pub struct Observability {
    pub metrics: metrics::Metrics,
    /// This replica's requests over `MCP_HEALTH_WINDOW_MS`.
    pub requests: window::Window,
    /// Labels each request with its route template.
    pub routes: Arc<RouteTemplates>,
    pub alerts: alerts::Alerts,
    /// The per-kind budget of broadcast server-side errors.
    pub errors: errors::ErrorLimiter,
    /// The dependencies this replica cannot reach now.
    pub dependencies: errors::DependencyWatch,
    /// This replica's name in alerts.
    pub replica: String,
}

impl Observability {
    /// Built before serving; the webhook sender (if configured) runs until `shutdown`.
    pub fn new(
        settings: &Settings,
        routes: Arc<RouteTemplates>,
        shutdown: &CancellationToken,
    ) -> Arc<Self> {
        let webhook = settings
            .alert_webhook_url
            .clone()
            .map(|url| alerts::spawn_webhook(url, shutdown.clone()));
        if let Some(endpoint) = &settings.otel_endpoint {
            mcp_shared::otlp::init(endpoint, "mcp-api", shutdown.clone());
        }
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "mcp-api".into());
        Arc::new(Self {
            metrics: metrics::Metrics::new(settings.enable_detailed_metrics),
            requests: window::Window::new(settings.health_window),
            routes,
            alerts: alerts::Alerts::new(settings.health_window, webhook),
            errors: errors::ErrorLimiter::default(),
            dependencies: errors::DependencyWatch::default(),
            replica: format!(
                "{host}:{}:{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
        })
    }

    /// Folds one event into the metrics and the agent anomaly checks.
    pub fn observe(&self, event: &Event) {
        let data = &event.data;
        match event.kind {
            EventType::TaskCompleted => {
                self.metrics.task_outcome(
                    data["type"].as_str(),
                    event.agent_id.map(|a| a.to_string()),
                    "completed",
                );
                if let (Some(t), Some(ms)) = (data["type"].as_str(), data["duration_ms"].as_i64()) {
                    self.metrics.task_completed(t, ms.max(0) as f64 / 1000.0);
                }
                if let Some(agent) = event.agent_id {
                    self.alerts.observe_agent(agent, false, Some(false));
                }
            }
            EventType::TaskFailed | EventType::TaskDead => {
                self.metrics.task_outcome(
                    data["type"].as_str(),
                    event.agent_id.map(|a| a.to_string()),
                    if event.kind == EventType::TaskDead {
                        "dead"
                    } else {
                        "failed"
                    },
                );
                if event.kind == EventType::TaskDead {
                    self.metrics.task_dead();
                } else {
                    self.metrics.task_retried();
                }
                if let Some(agent) = event.agent_id {
                    self.alerts.observe_agent(agent, false, Some(true));
                }
            }
            EventType::TaskUnassigned => self.metrics.assignment_expired(),
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
