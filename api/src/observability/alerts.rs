//! Alerts: conditions evaluated every `MCP_ALERT_INTERVAL_MS`, raised once when they start and
//! cleared once when they end. Each change is a `system.alert` event (`state: "raised"` or
//! `"cleared"`), a log line, the `mcp_alerts_active` / `mcp_alerts_raised_total` metrics, and,
//! with `ALERT_WEBHOOK_URL`, a POST of the same JSON (retried with backoff, off the request path).
//!
//! Scopes:
//! - `replica`: error rate and response time over this replica's request window. Every replica
//!   evaluates its own.
//! - `cluster`: queue age and agent health. Only the dispatching leader evaluates them, so one
//!   incident is one alert however many replicas run. Other replicas mirror the leader's events,
//!   so any replica lists them in `/system/health`, and a new leader takes over the alerts the
//!   old one raised (clearing them when they end) instead of raising them again.
//!
//! `queue_unserved`: work has waited longer than `MCP_ALERT_UNSERVED_AFTER_MS` on a capability
//! that no live worker or agent holds. Tasks and executions waiting on it name it in
//! `waiting_for`, so a user who started no worker for a stage sees why nothing moves.
//!
//! Agent anomalies, kept simple enough to explain in one line each:
//! - `agent_unhealthy`: the agent missed its heartbeats (`stale`, or `offline` — critical).
//! - `agent_flapping`: `MCP_ALERT_AGENT_FLAPS` status changes within the health window.
//! - `agent_failing`: more than `MCP_ALERT_AGENT_FAILURE_RATE` of its finished attempts in the
//!   window failed, over at least [`MIN_AGENT_ATTEMPTS`].
//! - `agent_efficiency`: its successful busy time over its busy time in the window (from the task
//!   rows, see [`super::agent_health`]) is below `ALERT_THRESHOLD_EFFICIENCY`, over at least
//!   [`MIN_AGENT_ATTEMPTS`] finished tasks; cleared once it is back at or above.
//!
//! Here: the conditions, worked out from figures handed in, and the state of raised alerts. The
//! monitoring service gathers the figures, evaluates on a timer and publishes the changes.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use mcp_shared::{
    Settings,
    config::Secret,
    domain::{agent::AgentStatus, event::Event},
    queue::QueueName,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::window::Window;
use crate::directory::AgentEntry;

/// Alert kinds every replica evaluates over its own requests.
const REPLICA_KINDS: &[&str] = &["error_rate", "response_time"];
/// Alert kinds the leader evaluates for the cluster.
const CLUSTER_KINDS: &[&str] = &[
    "queue_age",
    "queue_unserved",
    "agent_unhealthy",
    "agent_flapping",
    "agent_failing",
    "agent_efficiency",
];

/// An agent needs this many finished attempts in the window before its failure rate means much.
pub const MIN_AGENT_ATTEMPTS: u64 = super::agent_health::MIN_RUNS as u64;
/// Alerts waiting for webhook delivery; past it, new ones are dropped (and logged).
const WEBHOOK_QUEUE: usize = 256;
const WEBHOOK_ATTEMPTS: u32 = 5;
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alert {
    /// Unique per incident subject: the kind, plus the queue or agent it is about.
    pub key: String,
    /// The kind: `error_rate`, `response_time`, `queue_age`, `agent_unhealthy`,
    /// `agent_flapping`, `agent_failing`.
    pub alert: String,
    /// `warning` or `critical`.
    pub severity: String,
    /// `replica` or `cluster`.
    pub scope: String,
    /// The replica that raised it.
    pub replica: String,
    pub message: String,
    /// The measured figure and the threshold it crossed (same unit).
    pub value: f64,
    pub threshold: f64,
    /// What it is about (`{queue}` or `{agent_id, name}`); empty for request-rate alerts.
    #[serde(default)]
    pub subject: Value,
    pub raised_at: DateTime<Utc>,
}

/// Per agent: recent status changes and finished attempts, fed from the bus.
#[derive(Debug)]
struct AgentHistory {
    changes: VecDeque<Instant>,
    attempts: Window,
    last_event: Instant,
}

#[derive(Debug)]
pub struct Alerts {
    /// Every alert this replica knows to be raised: its own, and the leader's cluster alerts.
    active: Mutex<BTreeMap<String, Alert>>,
    agents: Mutex<HashMap<Uuid, AgentHistory>>,
    /// The health window, which the agent checks look back over.
    window: Duration,
    /// The last efficiency conditions worked out from the task rows, and when: they are read
    /// less often than the other conditions are evaluated (see [`Alerts::efficiency_due`]).
    efficiency: Mutex<Option<(Instant, Vec<Condition>)>>,
    webhook: Option<mpsc::Sender<Value>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Alerts {
    pub fn new(window: Duration, webhook: Option<mpsc::Sender<Value>>) -> Self {
        Self {
            active: Mutex::new(BTreeMap::new()),
            agents: Mutex::new(HashMap::new()),
            window,
            efficiency: Mutex::new(None),
            webhook,
        }
    }

    /// Raised alerts, most severe first.
    pub fn list(&self) -> Vec<Alert> {
        let mut all: Vec<Alert> = lock(&self.active).values().cloned().collect();
        all.sort_by(|a, b| {
            (b.severity == "critical")
                .cmp(&(a.severity == "critical"))
                .then_with(|| a.key.cmp(&b.key))
        });
        all
    }

    /// Raised alerts this replica answers for, by kind (the `mcp_alerts_active` gauge).
    pub fn owned_by_kind(&self, me: &str, leader: bool) -> BTreeMap<String, i64> {
        // Every kind this replica answers for is present, at 0 when quiet, so the series never
        // goes stale between incidents.
        let kinds = REPLICA_KINDS
            .iter()
            .chain(CLUSTER_KINDS.iter().filter(|_| leader));
        let mut by_kind: BTreeMap<String, i64> = kinds.map(|k| (k.to_string(), 0)).collect();
        for a in lock(&self.active).values() {
            if owns(a, me, leader) {
                *by_kind.entry(a.alert.clone()).or_insert(0) += 1;
            }
        }
        by_kind
    }

    /// Notes an agent event for the anomaly checks.
    pub fn observe_agent(&self, agent: Uuid, status_change: bool, attempt_failed: Option<bool>) {
        let now = Instant::now();
        let mut agents = lock(&self.agents);
        let h = agents.entry(agent).or_insert_with(|| AgentHistory {
            changes: VecDeque::new(),
            attempts: Window::new(self.window),
            last_event: now,
        });
        h.last_event = now;
        if status_change {
            h.changes.push_back(now);
        }
        // Followers never evaluate, so trim here too: memory stays bounded by the window.
        while h
            .changes
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            h.changes.pop_front();
        }
        if let Some(failed) = attempt_failed {
            h.attempts.record(now, failed, None);
        }
    }

    /// Status changes of `agent` seen within the window.
    pub fn status_changes(&self, agent: Uuid) -> u32 {
        let now = Instant::now();
        lock(&self.agents).get(&agent).map_or(0, |h| {
            h.changes
                .iter()
                .filter(|t| now.duration_since(**t) <= self.window)
                .count() as u32
        })
    }

    /// Whether the efficiency figures are older than `every` (or were never read).
    pub fn efficiency_due(&self, every: Duration) -> bool {
        lock(&self.efficiency)
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= every)
    }

    /// Keeps the efficiency conditions just worked out.
    pub fn set_efficiency(&self, holding: Vec<Condition>) {
        *lock(&self.efficiency) = Some((Instant::now(), holding));
    }

    /// The efficiency conditions last worked out.
    pub fn efficiency_conditions(&self) -> Vec<Condition> {
        lock(&self.efficiency)
            .as_ref()
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    }

    /// Follows another replica's cluster alert (the leader's events).
    pub fn mirror(&self, me: &str, event: &Event) {
        let Ok(alert) = serde_json::from_value::<Alert>(event.data.clone()) else {
            return;
        };
        if alert.scope != "cluster" || alert.replica == me {
            return;
        }
        let mut active = lock(&self.active);
        if event.data["state"] == "cleared" {
            active.remove(&alert.key);
        } else {
            active.insert(alert.key.clone(), alert);
        }
    }
}

fn owns(alert: &Alert, me: &str, leader: bool) -> bool {
    match alert.scope.as_str() {
        "cluster" => leader,
        _ => alert.replica == me,
    }
}

/// A condition that holds now; becomes an [`Alert`] when first raised.
#[derive(Debug, Clone)]
pub struct Condition {
    key: String,
    alert: &'static str,
    severity: &'static str,
    scope: &'static str,
    message: String,
    value: f64,
    threshold: f64,
    subject: Value,
}

/// The conditions of this replica's requests over the health window.
pub fn replica_conditions(s: &Settings, requests: &Window) -> Vec<Condition> {
    let stats = requests.stats(Instant::now());
    let mut out = Vec::new();
    if stats.count < s.alert_min_requests.max(1) {
        return out;
    }
    let rate = stats.error_rate();
    if rate > s.alert_threshold_error_rate {
        out.push(Condition {
            key: "error_rate".into(),
            alert: "error_rate",
            severity: "critical",
            scope: "replica",
            message: format!(
                "{:.1}% of the last {} requests failed with a server error (threshold {:.1}%)",
                rate * 100.0,
                stats.count,
                s.alert_threshold_error_rate * 100.0
            ),
            value: rate,
            threshold: s.alert_threshold_error_rate,
            subject: json!({}),
        });
    }
    let limit_ms = s.alert_threshold_response_time.as_secs_f64() * 1000.0;
    if stats.average_ms > limit_ms {
        out.push(Condition {
            key: "response_time".into(),
            alert: "response_time",
            severity: "warning",
            scope: "replica",
            message: format!(
                "average response time {:.1} ms over the last {} requests (threshold {limit_ms} ms)",
                stats.average_ms, stats.count
            ),
            value: stats.average_ms,
            threshold: limit_ms,
            subject: json!({}),
        });
    }
    out
}

/// An agent whose efficiency over the window is below `ALERT_THRESHOLD_EFFICIENCY`.
pub fn efficiency_condition(
    s: &Settings,
    agent: Uuid,
    name: &str,
    window: &super::agent_health::Window,
) -> Option<Condition> {
    let efficiency = window.efficiency()?;
    if window.finished < MIN_AGENT_ATTEMPTS as usize || efficiency >= s.alert_threshold_efficiency {
        return None;
    }
    Some(Condition {
        key: format!("agent_efficiency:{agent}"),
        alert: "agent_efficiency",
        severity: "warning",
        scope: "cluster",
        message: super::agent_health::efficiency_message(name, window, efficiency, s),
        value: efficiency,
        threshold: s.alert_threshold_efficiency,
        subject: json!({"agent_id": agent, "name": name}),
    })
}

impl Alerts {
    /// The cluster-wide conditions: from the oldest waiting task per queue
    /// (`(queue, created_at)`), the agent directory, and the agent events of the window.
    pub fn cluster_conditions(
        &self,
        s: &Settings,
        oldest_waiting: &[(String, DateTime<Utc>)],
        agents: &[AgentEntry],
    ) -> Vec<Condition> {
        let mut out = Vec::new();

        // Queue age: the oldest task waiting to run, per queue.
        let limit_ms = s.alert_queue_age.as_millis() as f64;
        for (queue, oldest) in oldest_waiting {
            let age_ms = (Utc::now() - *oldest).num_milliseconds() as f64;
            if age_ms > limit_ms {
                out.push(Condition {
                    key: format!("queue_age:{queue}"),
                    alert: "queue_age",
                    severity: "warning",
                    scope: "cluster",
                    message: format!(
                        "the oldest task waiting on {queue} has waited {:.1} s (threshold {:.1} s)",
                        age_ms / 1000.0,
                        limit_ms / 1000.0
                    ),
                    value: age_ms,
                    threshold: limit_ms,
                    subject: json!({"queue": queue}),
                });
            }
        }
        out.extend(unserved_conditions(s, oldest_waiting, agents));
        // Agents: missed heartbeats.
        let stale_ms = s.agent_stale_after().as_millis() as f64;
        for a in agents {
            if matches!(a.status, AgentStatus::Stale | AgentStatus::Offline) {
                let silent_ms = (Utc::now() - a.model.last_seen).num_milliseconds() as f64;
                out.push(Condition {
                    key: format!("agent_unhealthy:{}", a.model.id),
                    alert: "agent_unhealthy",
                    severity: if a.status == AgentStatus::Offline {
                        "critical"
                    } else {
                        "warning"
                    },
                    scope: "cluster",
                    message: format!(
                        "agent {} is {}: no heartbeat for {:.1} s",
                        a.model.name,
                        a.status,
                        silent_ms / 1000.0
                    ),
                    value: silent_ms,
                    threshold: stale_ms,
                    subject: json!({"agent_id": a.model.id, "name": a.model.name}),
                });
            }
        }

        // Agents: flapping and failing, from the events of the window.
        let names: HashMap<Uuid, &str> = agents
            .iter()
            .map(|a| (a.model.id, a.model.name.as_str()))
            .collect();
        let now = Instant::now();
        let window = s.health_window;
        let mut histories = lock(&self.agents);
        histories.retain(|_, h| now.duration_since(h.last_event) <= window * 2);
        for (id, h) in histories.iter_mut() {
            while h
                .changes
                .front()
                .is_some_and(|t| now.duration_since(*t) > window)
            {
                h.changes.pop_front();
            }
            let name = names.get(id).copied().unwrap_or("unknown");
            let flaps = h.changes.len() as u32;
            if flaps >= s.alert_agent_flaps {
                out.push(Condition {
                    key: format!("agent_flapping:{id}"),
                    alert: "agent_flapping",
                    severity: "warning",
                    scope: "cluster",
                    message: format!(
                        "agent {name} changed status {flaps} times in {:.0} s",
                        window.as_secs_f64()
                    ),
                    value: flaps as f64,
                    threshold: s.alert_agent_flaps as f64,
                    subject: json!({"agent_id": id, "name": name}),
                });
            }
            let attempts = h.attempts.stats(now);
            if attempts.count >= MIN_AGENT_ATTEMPTS
                && attempts.error_rate() > s.alert_agent_failure_rate
            {
                out.push(Condition {
                    key: format!("agent_failing:{id}"),
                    alert: "agent_failing",
                    severity: "warning",
                    scope: "cluster",
                    message: format!(
                        "agent {name} failed {} of its last {} attempts",
                        attempts.errors, attempts.count
                    ),
                    value: attempts.error_rate(),
                    threshold: s.alert_agent_failure_rate,
                    subject: json!({"agent_id": id, "name": name}),
                });
            }
        }
        out
    }
}

/// Capability keys with work waiting past the threshold that no live worker or agent can take.
fn unserved_conditions(
    s: &Settings,
    oldest_waiting: &[(String, DateTime<Utc>)],
    agents: &[AgentEntry],
) -> Vec<Condition> {
    // The oldest waiting task per capability key, whatever its tier.
    let mut oldest: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for (queue, since) in oldest_waiting {
        let Some(name) = QueueName::parse(queue) else {
            continue;
        };
        let entry = oldest.entry(name.capability).or_insert(*since);
        *entry = (*entry).min(*since);
    }
    let live: Vec<Vec<&str>> = agents
        .iter()
        .filter(|a| a.status.is_healthy())
        .map(|a| a.capabilities.iter().map(|c| c.name.as_str()).collect())
        .collect();
    let limit_ms = s.alert_unserved_after.as_millis() as f64;
    let mut out = Vec::new();
    for (key, since) in oldest {
        let waited_ms = (Utc::now() - since).num_milliseconds() as f64;
        if waited_ms <= limit_ms {
            continue;
        }
        let needs: Vec<&str> = key.split('+').collect();
        if live
            .iter()
            .any(|held| needs.iter().all(|n| held.contains(n)))
        {
            continue;
        }
        out.push(Condition {
            key: format!("queue_unserved:{key}"),
            alert: "queue_unserved",
            severity: "warning",
            scope: "cluster",
            message: format!(
                "work needing {key} has waited {:.1} s and no live worker or agent serves it",
                waited_ms / 1000.0
            ),
            value: waited_ms,
            threshold: limit_ms,
            subject: json!({"capability": key, "waiting_for": key}),
        });
    }
    out
}

impl Alerts {
    /// The capability `capability`-keyed work is stuck on, if a `queue_unserved` alert is raised
    /// for it: what tasks and executions report as `waiting_for`.
    pub fn waiting_for(&self, capability: &str) -> Option<String> {
        lock(&self.active)
            .contains_key(&format!("queue_unserved:{capability}"))
            .then(|| capability.to_string())
    }

    /// Takes in one evaluation's `holding` conditions: raises what started, updates what goes on,
    /// and clears what ended among the alerts `me` owns (cluster ones only when `cluster_known`:
    /// without fresh cluster figures an outage is not a recovery). Returns `(raised, cleared)`.
    pub fn settle(
        &self,
        me: &str,
        holding: &[Condition],
        cluster_known: bool,
    ) -> (Vec<Alert>, Vec<Alert>) {
        let mut raised = Vec::new();
        let mut cleared = Vec::new();
        let mut active = lock(&self.active);
        for c in holding {
            match active.get_mut(&c.key) {
                Some(a) => {
                    a.value = c.value;
                    a.message.clone_from(&c.message);
                    a.severity = c.severity.into();
                }
                None => {
                    let alert = Alert {
                        key: c.key.clone(),
                        alert: c.alert.into(),
                        severity: c.severity.into(),
                        scope: c.scope.into(),
                        replica: me.to_string(),
                        message: c.message.clone(),
                        value: c.value,
                        threshold: c.threshold,
                        subject: c.subject.clone(),
                        raised_at: Utc::now(),
                    };
                    active.insert(c.key.clone(), alert.clone());
                    raised.push(alert);
                }
            }
        }
        let ended: Vec<String> = active
            .values()
            .filter(|a| owns(a, me, cluster_known) && !holding.iter().any(|c| c.key == a.key))
            .map(|a| a.key.clone())
            .collect();
        for key in ended {
            if let Some(a) = active.remove(&key) {
                cleared.push(a);
            }
        }
        (raised, cleared)
    }

    /// Queues `notice` for the webhook, if one is configured; never waits.
    pub fn notify_webhook(&self, key: &str, notice: &Value) {
        if let Some(tx) = &self.webhook
            && tx.try_send(notice.clone()).is_err()
        {
            tracing::warn!(alert = %key, "alert webhook queue full; notification dropped");
        }
    }
}

/// The `system.alert` event's data (and the webhook's body) for a change of `alert`: `phase`
/// is `raised` or `cleared`.
pub fn notice(alert: &Alert, phase: &str) -> Value {
    let mut data = serde_json::to_value(alert).unwrap_or_default();
    data["state"] = json!(phase);
    if phase == "cleared" {
        data["cleared_at"] = json!(Utc::now());
    }
    data
}

/// Delivers alerts to the webhook in order, each with retries and exponential backoff. Runs on
/// its own task: a slow or failing receiver never holds up evaluation or requests.
pub fn spawn_webhook(url: Secret, shutdown: CancellationToken) -> mpsc::Sender<Value> {
    let (tx, mut rx) = mpsc::channel::<Value>(WEBHOOK_QUEUE);
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .build()
            .unwrap_or_default();
        loop {
            let body = tokio::select! {
                b = rx.recv() => match b { Some(b) => b, None => return },
                _ = shutdown.cancelled() => return,
            };
            let mut delay = Duration::from_millis(250);
            for attempt in 1..=WEBHOOK_ATTEMPTS {
                // Errors are logged without the URL: it may carry a token.
                match client.post(url.expose()).json(&body).send().await {
                    Ok(r) if r.status().is_success() => break,
                    Ok(r) => tracing::warn!(
                        attempt,
                        status = r.status().as_u16(),
                        "alert webhook refused the alert"
                    ),
                    Err(e) => {
                        tracing::warn!(attempt, error = %e.without_url(), "alert webhook unreachable")
                    }
                }
                if attempt == WEBHOOK_ATTEMPTS {
                    tracing::warn!(alert = %body["key"], "alert webhook gave up after {WEBHOOK_ATTEMPTS} attempts");
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(scope: &str, replica: &str) -> Alert {
        Alert {
            key: "queue_age:mcp:generic:low".into(),
            alert: "queue_age".into(),
            severity: "warning".into(),
            scope: scope.into(),
            replica: replica.into(),
            message: "old".into(),
            value: 2.0,
            threshold: 1.0,
            subject: json!({"queue": "mcp:generic:low"}),
            raised_at: Utc::now(),
        }
    }

    fn event(a: &Alert, state: &str) -> Event {
        let mut data = serde_json::to_value(a).unwrap();
        data["state"] = json!(state);
        Event::system_alert(data)
    }

    #[test]
    fn followers_mirror_the_leaders_cluster_alerts_only() {
        let alerts = Alerts::new(Duration::from_secs(60), None);
        // Another replica's request-rate alert is its own business; our own events are known.
        alerts.mirror("me", &event(&alert("replica", "other"), "raised"));
        alerts.mirror("me", &event(&alert("cluster", "me"), "raised"));
        assert!(alerts.list().is_empty());
        let leaders = alert("cluster", "leader");
        alerts.mirror("me", &event(&leaders, "raised"));
        assert_eq!(alerts.list(), vec![leaders.clone()]);
        // Listed, but not owned (so not in this replica's gauge) until this replica leads.
        let follower = alerts.owned_by_kind("me", false);
        assert_eq!(follower.get("queue_age"), None);
        assert_eq!(follower["error_rate"], 0);
        let leader = alerts.owned_by_kind("me", true);
        assert_eq!(leader["queue_age"], 1);
        assert_eq!(leader["agent_failing"], 0);
        alerts.mirror("me", &event(&leaders, "cleared"));
        assert!(alerts.list().is_empty());
    }
}
