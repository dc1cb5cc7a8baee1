//! Monitoring: what feeds the observability core and what reads it. Folds the event bus into
//! the metrics, evaluates alerts on a timer and publishes their changes, gathers the cluster
//! figures for `/metrics`, and answers the health and readiness probes.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mcp_shared::{
    bus::emit,
    db::tasks,
    domain::{agent::AgentStatus, event::Event, task::TaskStatus},
    entities::tasks as task_rows,
    shutdown::spawn_every,
};
use poem_openapi::Object;
use sea_orm::{ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QuerySelect};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::{
    directory::{self, AgentEntry},
    error::ApiError,
    observability::{
        agent_health,
        alerts::{self, Alert},
        errors,
        metrics::ClusterSnapshot,
        window::WindowStats,
    },
    services::queues,
    state::AppState,
};

/// How long a dependency may take to answer a readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Follows the event bus into the metrics, and evaluates alerts, until `shutdown`.
pub fn spawn(state: AppState, shutdown: CancellationToken) {
    let obs = state.observability.clone();
    let mut events = state.bus.subscribe();
    let stop = shutdown.clone();
    let follower = state.clone();
    tokio::spawn(async move {
        let state = follower;
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                _ = stop.cancelled() => return,
            };
            match event {
                Ok(event) => {
                    obs.observe(&event);
                    if let Some(error) = Event::error_reported_by(&event)
                        && state.dispatcher.is_leader()
                    {
                        report_error(&state, error).await;
                    }
                }
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
    spawn_evaluator(state.clone(), shutdown.clone());
    spawn_dependency_watch(state, shutdown);
}

/// Broadcasts a task or stage failure as `error.occurred`, within the rate limit.
async fn report_error(state: &AppState, error: Event) {
    if let Some(error) = errors::limited(&state.observability.errors, error, Instant::now()) {
        emit(state.bus.as_ref(), error).await;
    }
}

/// Probes this replica's dependencies every `MCP_ALERT_INTERVAL_MS`, telling this replica's
/// subscribers when one becomes unreachable and when it answers again; and sends the summaries
/// of errors the rate limit held back.
fn spawn_dependency_watch(state: AppState, shutdown: CancellationToken) {
    let period = state.settings.alert_interval;
    spawn_every(period, shutdown, move || {
        let state = state.clone();
        async move {
            let obs = &state.observability;
            for (dependency, outcome) in probe_dependencies(&state).await {
                let now = Instant::now();
                let event = match obs.dependencies.observe(dependency, outcome, now) {
                    Some(errors::Change::Lost(e)) => {
                        tracing::warn!(dependency, reason = %e, "dependency unreachable");
                        Event::dependency_unavailable(dependency, &obs.replica, &e)
                    }
                    Some(errors::Change::Recovered(down)) => {
                        tracing::info!(
                            dependency,
                            down_ms = down.as_millis() as u64,
                            "dependency reachable again"
                        );
                        Event::dependency_recovered(
                            dependency,
                            &obs.replica,
                            down.as_millis() as u64,
                        )
                    }
                    None => continue,
                };
                if let Some(event) = errors::limited(&obs.errors, event, now) {
                    state.bus.deliver_locally(event);
                }
            }
            for (kind, suppressed) in obs.errors.due_summaries(Instant::now()) {
                let summary = Event::errors_suppressed(&kind, suppressed);
                if kind.starts_with("dependency:") {
                    state.bus.deliver_locally(summary);
                } else {
                    emit(state.bus.as_ref(), summary).await;
                }
            }
        }
    });
}

/// Each dependency of this replica, and whether it answered in time.
async fn probe_dependencies(state: &AppState) -> Vec<(&'static str, Result<(), String>)> {
    // Subscribers are told whether the dependency refused or did not answer; the cause (which
    // may name hosts) stays in this replica's log.
    fn outcome<E: std::fmt::Display>(
        dependency: &str,
        r: Result<Result<(), E>, tokio::time::error::Elapsed>,
    ) -> Result<(), String> {
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(dependency, error = %e, "dependency probe failed");
                Err("the probe failed".into())
            }
            Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
        }
    }
    let (db, queue, artifacts) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, state.db.ping()),
        tokio::time::timeout(PROBE_TIMEOUT, state.queue.ping()),
        tokio::time::timeout(PROBE_TIMEOUT, state.artifacts.ping()),
    );
    let queue_name = state.queue.backend_name();
    vec![
        ("database", outcome("database", db)),
        (queue_name, outcome(queue_name, queue)),
        ("artifact store", outcome("artifact store", artifacts)),
    ]
}

/// Evaluates alerts every `MCP_ALERT_INTERVAL_MS` until shutdown.
fn spawn_evaluator(state: AppState, shutdown: CancellationToken) {
    let period = state.settings.alert_interval;
    spawn_every(period, shutdown, move || {
        let state = state.clone();
        async move { evaluate(&state).await }
    });
}

/// Every agent the directory knows.
async fn all_agents(state: &AppState) -> Vec<AgentEntry> {
    state
        .directory
        .discover(&directory::Query {
            limit: usize::MAX,
            ..Default::default()
        })
        .await
}

#[derive(FromQueryResult)]
struct OldestRow {
    queue: String,
    oldest: Option<DateTime<Utc>>,
}

/// The oldest task waiting to run, per queue.
async fn oldest_waiting(state: &AppState) -> mcp_shared::Result<Vec<(String, DateTime<Utc>)>> {
    let rows = task_rows::Entity::find()
        .select_only()
        .column(task_rows::Column::Queue)
        .column_as(task_rows::Column::CreatedAt.min(), "oldest")
        .filter(task_rows::Column::Status.eq(TaskStatus::Pending.as_str()))
        .group_by(task_rows::Column::Queue)
        .into_model::<OldestRow>()
        .all(&state.db.conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r.queue, r.oldest?)))
        .collect())
}

/// Efficiency is worked out every this many alert evaluations.
const EFFICIENCY_EVERY: u32 = 5;
/// Most finished tasks one efficiency evaluation reads; past it, the newest count.
const EFFICIENCY_MAX_RUNS: u64 = 100_000;

/// The agents below `ALERT_THRESHOLD_EFFICIENCY` over the window, from the task rows.
async fn efficiency_conditions(
    state: &AppState,
    agents: &[AgentEntry],
) -> mcp_shared::Result<Vec<alerts::Condition>> {
    let since = Utc::now()
        - chrono::Duration::from_std(state.settings.health_window)
            .unwrap_or_else(|_| chrono::Duration::hours(1));
    let runs = mcp_shared::db::agents::runs_since(&state.db.conn, None, since, EFFICIENCY_MAX_RUNS)
        .await?;
    let mut by_agent: std::collections::HashMap<uuid::Uuid, Vec<mcp_shared::db::agents::Run>> =
        std::collections::HashMap::new();
    for r in runs {
        by_agent.entry(r.agent_id).or_default().push(r);
    }
    let names: std::collections::HashMap<uuid::Uuid, &str> = agents
        .iter()
        .map(|a| (a.model.id, a.model.name.as_str()))
        .collect();
    Ok(by_agent
        .iter()
        .filter_map(|(id, runs)| {
            let window = agent_health::Window::of(runs);
            let name = names.get(id).copied().unwrap_or("unknown");
            alerts::efficiency_condition(&state.settings, *id, name, &window)
        })
        .collect())
}

/// One evaluation: raises what started, clears what ended, among the alerts this replica owns.
pub async fn evaluate(state: &AppState) {
    let obs = &state.observability;
    let mut holding = alerts::replica_conditions(&state.settings, &obs.requests);
    // Without fresh cluster figures nothing cluster-wide is cleared: an outage is not a recovery.
    let mut cluster_known = false;
    if state.dispatcher.is_leader() {
        match oldest_waiting(state).await {
            Ok(oldest) => {
                let agents = all_agents(state).await;
                holding.extend(
                    obs.alerts
                        .cluster_conditions(&state.settings, &oldest, &agents),
                );
                cluster_known = true;
                // Efficiency reads the window's task rows: a few times per window is enough,
                // and keeps a busy cluster's leader from scanning them every second.
                if obs
                    .alerts
                    .efficiency_due(state.settings.alert_interval * EFFICIENCY_EVERY)
                {
                    match efficiency_conditions(state, &agents).await {
                        Ok(c) => obs.alerts.set_efficiency(c),
                        Err(e) => {
                            tracing::warn!(error = %e, "agent efficiency evaluation failed");
                            cluster_known = false;
                        }
                    }
                }
                holding.extend(obs.alerts.efficiency_conditions());
            }
            Err(e) => tracing::warn!(error = %e, "cluster alert evaluation failed"),
        }
    }
    let (raised, cleared) = obs.alerts.settle(&obs.replica, &holding, cluster_known);
    for alert in raised {
        tracing::warn!(alert = %alert.alert, key = %alert.key, severity = %alert.severity,
            value = alert.value, threshold = alert.threshold, message = %alert.message, "alert raised");
        obs.metrics.alert_raised(&alert.alert);
        publish(state, &alert, "raised").await;
    }
    for alert in cleared {
        tracing::info!(alert = %alert.alert, key = %alert.key, "alert cleared");
        publish(state, &alert, "cleared").await;
    }
}

/// A change of `alert`: to the webhook, and as a `system.alert` event.
async fn publish(state: &AppState, alert: &Alert, phase: &str) {
    let data = alerts::notice(alert, phase);
    state.observability.alerts.notify_webhook(&alert.key, &data);
    emit(state.bus.as_ref(), Event::system_alert(data)).await;
}

/// Reads the cluster-wide gauges: one grouped count of the tasks (the same one behind
/// `GET /api/v1/queues`) and the agent directory.
async fn cluster_snapshot(state: &AppState) -> mcp_shared::Result<ClusterSnapshot> {
    let counts = tasks::counts_by_queue(&state.db.conn).await?;
    let mut snapshot = ClusterSnapshot::default();
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
    for a in all_agents(state).await {
        *snapshot
            .agents_by_status
            .entry(a.status.as_str().to_string())
            .or_insert(0) += 1;
    }
    Ok(snapshot)
}

/// The Prometheus text exposition: this replica's figures and, on the dispatching leader, the
/// cluster's (so one series exists per cluster, however many replicas are scraped).
pub async fn metrics_text(state: &AppState) -> Result<String, ApiError> {
    let leader = state.dispatcher.is_leader();
    let cluster = if leader {
        match cluster_snapshot(state).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cluster figures unavailable");
                return Err(ApiError::unavailable("database"));
            }
        }
    } else {
        None
    };
    let obs = &state.observability;
    Ok(obs.metrics.render(
        state.connections.current(),
        &obs.alerts.owned_by_kind(&obs.replica, leader),
        cluster.as_ref(),
    ))
}

/// What `/system/health` is made of.
pub struct HealthFigures {
    /// This replica's requests over the health window.
    pub requests: WindowStats,
    /// Agents that can take work (`active` or `busy`).
    pub active_agents: i64,
    /// Tasks waiting to run, all queues and tiers.
    pub queued_tasks: i64,
    /// Raised alerts, most severe first.
    pub alerts: Vec<Alert>,
}

/// The figures behind `/system/health`.
pub async fn health_figures(state: &AppState) -> Result<HealthFigures, ApiError> {
    let requests = state.observability.requests.stats(Instant::now());
    let active_agents = all_agents(state)
        .await
        .iter()
        .filter(|a| matches!(a.status, AgentStatus::Active | AgentStatus::Busy))
        .count() as i64;
    let queued_tasks = queues::waiting(state).await?;
    Ok(HealthFigures {
        requests,
        active_agents,
        queued_tasks,
        alerts: state.observability.alerts.list(),
    })
}

/// Ok when the database, the queue backend and the artifact store each answer in time; else 503
/// naming the first that did not.
pub async fn readiness(state: &AppState) -> Result<(), ApiError> {
    let db = tokio::time::timeout(PROBE_TIMEOUT, state.db.ping()).await;
    if !matches!(db, Ok(Ok(()))) {
        return Err(ApiError::unavailable("database"));
    }
    let queue = tokio::time::timeout(PROBE_TIMEOUT, state.queue.ping()).await;
    if !matches!(queue, Ok(Ok(()))) {
        return Err(ApiError::unavailable(state.queue.backend_name()));
    }
    let artifacts = tokio::time::timeout(PROBE_TIMEOUT, state.artifacts.ping()).await;
    if !matches!(artifacts, Ok(Ok(()))) {
        return Err(ApiError::unavailable("artifact store"));
    }
    Ok(())
}

/// A raised alert.
#[derive(Object)]
pub struct AlertView {
    /// Unique per subject, e.g. `queue_age:mcp:generic:low`.
    pub key: String,
    /// `error_rate`, `response_time`, `queue_age`, `agent_unhealthy`, `agent_flapping`,
    /// `agent_failing` or `agent_efficiency`.
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

/// `/system/health` and the MCP `system_health` tool: live figures and the alerts raised now.
pub async fn system_health(state: &AppState) -> Result<SystemHealth, ApiError> {
    let figures = health_figures(state).await?;
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
    Ok(SystemHealth {
        overall_health: (1.0 - penalty).max(0.0),
        status: status.into(),
        active_agents: figures.active_agents,
        queued_tasks: figures.queued_tasks,
        average_response_time_ms: stats.average_ms,
        error_rate: stats.error_rate(),
        requests: stats.count as i64,
        window_ms: state.settings.health_window.as_millis() as i64,
        alerts: alerts.into_iter().map(AlertView::from).collect(),
    })
}
