//! `/system/health`: how this replica and the cluster are doing, with the alerts raised now.

use mcp_shared::auth::Permission;
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use super::{ApiTags, Envelope, ok};
use crate::{
    auth::Auth, error::ApiResult, observability::alerts::Alert, services::monitoring,
    state::AppState,
};

pub struct SystemApi;

/// A raised alert.
#[derive(Object)]
pub struct AlertView {
    /// Unique per subject, e.g. `queue_age:mcp:generic:low`.
    pub key: String,
    /// `error_rate`, `response_time`, `queue_age`, `agent_unhealthy`, `agent_flapping` or
    /// `agent_failing`.
    pub alert: String,
    /// `warning` or `critical`.
    pub severity: String,
    /// `replica` (this replica's requests) or `cluster`.
    pub scope: String,
    /// The replica that raised it.
    pub replica: String,
    pub message: String,
    /// The measured figure and the threshold it crossed, in the same unit (a share, or ms).
    pub value: f64,
    pub threshold: f64,
    /// What it is about: `{queue}` or `{agent_id, name}`.
    pub subject: serde_json::Value,
    pub raised_at: chrono::DateTime<chrono::Utc>,
}

impl From<Alert> for AlertView {
    fn from(a: Alert) -> Self {
        Self {
            key: a.key,
            alert: a.alert,
            severity: a.severity,
            scope: a.scope,
            replica: a.replica,
            message: a.message,
            value: a.value,
            threshold: a.threshold,
            subject: a.subject,
            raised_at: a.raised_at,
        }
    }
}

#[derive(Object)]
pub struct SystemHealth {
    /// 1 with no alert; each warning takes 0.25 and each critical alert 0.5, down to 0.
    pub overall_health: f64,
    /// `healthy` (no alert), `degraded` (warnings) or `unhealthy` (a critical alert).
    pub status: String,
    /// Agents that can take work (`active` or `busy`).
    pub active_agents: i64,
    /// Tasks waiting to run, all queues and tiers.
    pub queued_tasks: i64,
    /// Mean response time of this replica's requests in the window (long polls excluded).
    pub average_response_time_ms: f64,
    /// Share of this replica's requests in the window answered with a server error (5xx);
    /// client errors (4xx) do not count.
    pub error_rate: f64,
    /// Requests this replica answered in the window.
    pub requests: i64,
    /// The window's length (`MCP_HEALTH_WINDOW_MS`).
    pub window_ms: i64,
    pub alerts: Vec<AlertView>,
}

#[derive(ApiResponse)]
pub enum SystemHealthResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<SystemHealth>>),
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::System")]
impl SystemApi {
    /// Live health from this replica's recent requests, the agent directory, the queues and
    /// the alerts raised now.
    #[oai(path = "/system/health", method = "get")]
    async fn health(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<SystemHealthResponse> {
        auth.0.require(Permission::SystemRead)?;
        let figures = monitoring::health_figures(&state).await?;
        let (stats, alerts) = (figures.requests, figures.alerts);
        let penalty: f64 = alerts
            .iter()
            .map(|a| if a.severity == "critical" { 0.5 } else { 0.25 })
            .sum();
        let status = if alerts.iter().any(|a| a.severity == "critical") {
            "unhealthy"
        } else if alerts.is_empty() {
            "healthy"
        } else {
            "degraded"
        };
        Ok(SystemHealthResponse::Ok(ok(SystemHealth {
            overall_health: (1.0 - penalty).max(0.0),
            status: status.into(),
            active_agents: figures.active_agents,
            queued_tasks: figures.queued_tasks,
            average_response_time_ms: stats.average_ms,
            error_rate: stats.error_rate(),
            requests: stats.count as i64,
            window_ms: state.settings.health_window.as_millis() as i64,
            alerts: alerts.into_iter().map(AlertView::from).collect(),
        })))
    }
}
