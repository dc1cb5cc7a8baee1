//! The metrics registry and its Prometheus text exposition (format 0.0.4), written by hand: a
//! few counters, gauges and histograms do not need a metrics library.
//!
//! Two kinds of series:
//! - **per replica** (HTTP requests, WebSocket connections, request-rate alerts): what this
//!   process served; sum them across replicas.
//! - **cluster-wide** (queue depth, tasks and agents by status, task durations, retries, dead
//!   letters, pipeline records, cluster alerts): every replica reads the whole event stream and
//!   the same database, so each would report the same figures. Only the dispatching leader
//!   exports them, so `sum()` across replicas stays right and followers spend nothing on them.
//!   The event-fed counters run on every replica (a new leader has the figures at once); when
//!   leadership moves, the series continue under the new leader's `instance` label.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write,
    sync::Mutex,
};

/// Upper bounds (seconds) of HTTP request latency buckets.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds (seconds) of task duration buckets: from no-op tasks to long pipeline shards.
const TASK_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, not cumulative; one extra for `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        let mut cumulative = 0;
        for (i, n) in self.counts.iter().enumerate() {
            cumulative += n;
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            sample(out, &format!("{name}_bucket"), &with_le, cumulative as f64);
        }
        sample(out, &format!("{name}_sum"), labels, self.sum);
        sample(out, &format!("{name}_count"), labels, self.count as f64);
    }
}

/// One HTTP series: route template, method, status.
type HttpKey = (&'static str, String, u16);

/// What the metrics endpoint reads at scrape time from the database and the directory.
#[derive(Debug, Default)]
pub struct ClusterSnapshot {
    /// (capability, tier) → waiting tasks.
    pub queue_depth: Vec<(String, &'static str, i64)>,
    /// status → tasks.
    pub tasks_by_status: BTreeMap<String, i64>,
    /// status → registered agents.
    pub agents_by_status: BTreeMap<String, i64>,
}

#[derive(Debug, Default)]
struct EventFed {
    task_durations: BTreeMap<String, Histogram>,
    retries: u64,
    dead_letters: u64,
    /// Assignments released because the agent did not claim them in time.
    assignments_expired: u64,
    /// With detailed metrics: (task type, outcome) → attempts.
    outcomes_by_type: BTreeMap<(String, &'static str), u64>,
    /// With detailed metrics: (agent id, outcome) → attempts.
    outcomes_by_agent: BTreeMap<(String, &'static str), u64>,
    /// stage → (records in, records out).
    pipeline_records: BTreeMap<String, (u64, u64)>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// `ENABLE_DETAILED_METRICS`: also count attempt outcomes per task type and per agent.
    detailed: bool,
    http: Mutex<HashMap<HttpKey, Histogram>>,
    events: Mutex<EventFed>,
    /// alert kind → times this replica raised it.
    alerts_raised: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// Metrics with or without the detailed per-type and per-agent outcome series.
    pub fn new(detailed: bool) -> Self {
        Self {
            detailed,
            ..Default::default()
        }
    }

    pub fn observe_request(&self, route: &'static str, method: &str, status: u16, seconds: f64) {
        lock(&self.http)
            .entry((route, method.to_string(), status))
            .or_insert_with(|| Histogram::new(HTTP_BUCKETS))
            .observe(seconds);
    }

    pub fn task_completed(&self, task_type: &str, seconds: f64) {
        lock(&self.events)
            .task_durations
            .entry(task_type.to_string())
            .or_insert_with(|| Histogram::new(TASK_BUCKETS))
            .observe(seconds);
    }

    pub fn task_retried(&self) {
        lock(&self.events).retries += 1;
    }

    pub fn task_dead(&self) {
        lock(&self.events).dead_letters += 1;
    }

    /// One attempt's outcome (`completed`, `failed`, `dead`), counted per task type and per agent
    /// when detailed metrics are on.
    pub fn task_outcome(
        &self,
        task_type: Option<&str>,
        agent: Option<String>,
        outcome: &'static str,
    ) {
        if !self.detailed {
            return;
        }
        let mut events = lock(&self.events);
        if let Some(t) = task_type {
            *events
                .outcomes_by_type
                .entry((t.to_string(), outcome))
                .or_default() += 1;
        }
        if let Some(a) = agent {
            *events.outcomes_by_agent.entry((a, outcome)).or_default() += 1;
        }
    }

    pub fn assignment_expired(&self) {
        lock(&self.events).assignments_expired += 1;
    }

    pub fn stage_completed(&self, stage: &str, records_in: u64, records_out: u64) {
        let mut events = lock(&self.events);
        let e = events
            .pipeline_records
            .entry(stage.to_string())
            .or_default();
        e.0 += records_in;
        e.1 += records_out;
    }

    pub fn alert_raised(&self, kind: &str) {
        *lock(&self.alerts_raised)
            .entry(kind.to_string())
            .or_default() += 1;
    }

    /// The exposition. `cluster` is `Some` on the leader only; `alerts_active` counts the alerts
    /// this replica owns, by kind.
    pub fn render(
        &self,
        websocket_connections: usize,
        alerts_active: &BTreeMap<String, i64>,
        cluster: Option<&ClusterSnapshot>,
    ) -> String {
        let mut out = String::with_capacity(16 * 1024);

        let mut http: Vec<(HttpKey, Histogram)> = lock(&self.http)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        http.sort_by(|a, b| a.0.cmp(&b.0));
        header(
            &mut out,
            "mcp_http_requests_total",
            "HTTP requests served by this replica, by route template, method and status.",
            "counter",
        );
        for ((route, method, status), h) in &http {
            let status = status.to_string();
            let labels = [("route", *route), ("method", method), ("status", &status)];
            sample(&mut out, "mcp_http_requests_total", &labels, h.count as f64);
        }
        header(
            &mut out,
            "mcp_http_request_duration_seconds",
            "HTTP request latency on this replica, until the response head is ready.",
            "histogram",
        );
        for ((route, method, status), h) in &http {
            let status = status.to_string();
            let labels = [("route", *route), ("method", method), ("status", &status)];
            h.render(&mut out, "mcp_http_request_duration_seconds", &labels);
        }

        header(
            &mut out,
            "mcp_websocket_connections",
            "WebSocket connections open on this replica.",
            "gauge",
        );
        sample(
            &mut out,
            "mcp_websocket_connections",
            &[],
            websocket_connections as f64,
        );

        header(
            &mut out,
            "mcp_alerts_active",
            "Alerts currently raised, by kind (request-rate alerts per replica, the others on the leader).",
            "gauge",
        );
        for (kind, n) in alerts_active {
            sample(&mut out, "mcp_alerts_active", &[("alert", kind)], *n as f64);
        }
        header(
            &mut out,
            "mcp_alerts_raised_total",
            "Alerts raised by this replica, by kind.",
            "counter",
        );
        for (kind, n) in lock(&self.alerts_raised).iter() {
            sample(
                &mut out,
                "mcp_alerts_raised_total",
                &[("alert", kind)],
                *n as f64,
            );
        }

        let Some(cluster) = cluster else {
            return out;
        };
        header(
            &mut out,
            "mcp_queue_depth",
            "Tasks waiting to run (including retries that are due), by capability and tier.",
            "gauge",
        );
        for (capability, tier, n) in &cluster.queue_depth {
            sample(
                &mut out,
                "mcp_queue_depth",
                &[("capability", capability), ("tier", tier)],
                *n as f64,
            );
        }
        header(&mut out, "mcp_tasks", "Tasks by status.", "gauge");
        for (status, n) in &cluster.tasks_by_status {
            sample(&mut out, "mcp_tasks", &[("status", status)], *n as f64);
        }
        header(
            &mut out,
            "mcp_agents",
            "Registered agents by status.",
            "gauge",
        );
        for (status, n) in &cluster.agents_by_status {
            sample(&mut out, "mcp_agents", &[("status", status)], *n as f64);
        }

        let events = lock(&self.events);
        header(
            &mut out,
            "mcp_task_duration_seconds",
            "Run time of completed tasks (start of the successful attempt to completion), by type.",
            "histogram",
        );
        for (task_type, h) in &events.task_durations {
            h.render(
                &mut out,
                "mcp_task_duration_seconds",
                &[("type", task_type)],
            );
        }
        if self.detailed {
            header(
                &mut out,
                "mcp_task_outcomes_total",
                "Attempt outcomes by task type (completed, failed: will be retried, dead).",
                "counter",
            );
            for ((task_type, outcome), n) in &events.outcomes_by_type {
                sample(
                    &mut out,
                    "mcp_task_outcomes_total",
                    &[("type", task_type), ("outcome", outcome)],
                    *n as f64,
                );
            }
            header(
                &mut out,
                "mcp_agent_task_outcomes_total",
                "Attempt outcomes by the agent (or built-in worker) that ran them.",
                "counter",
            );
            for ((agent, outcome), n) in &events.outcomes_by_agent {
                sample(
                    &mut out,
                    "mcp_agent_task_outcomes_total",
                    &[("agent_id", agent), ("outcome", outcome)],
                    *n as f64,
                );
            }
        }
        header(
            &mut out,
            "mcp_task_assignments_expired_total",
            "Assignments released to their queue because the agent did not claim them within AGENT_ASSIGNMENT_TIMEOUT.",
            "counter",
        );
        sample(
            &mut out,
            "mcp_task_assignments_expired_total",
            &[],
            events.assignments_expired as f64,
        );
        header(
            &mut out,
            "mcp_task_retries_total",
            "Failed attempts that will be retried.",
            "counter",
        );
        sample(
            &mut out,
            "mcp_task_retries_total",
            &[],
            events.retries as f64,
        );
        header(
            &mut out,
            "mcp_task_dead_letters_total",
            "Tasks that ran out of attempts (dead).",
            "counter",
        );
        sample(
            &mut out,
            "mcp_task_dead_letters_total",
            &[],
            events.dead_letters as f64,
        );
        header(
            &mut out,
            "mcp_pipeline_records_in_total",
            "Records entering each pipeline stage.",
            "counter",
        );
        for (stage, (records_in, _)) in &events.pipeline_records {
            sample(
                &mut out,
                "mcp_pipeline_records_in_total",
                &[("stage", stage)],
                *records_in as f64,
            );
        }
        header(
            &mut out,
            "mcp_pipeline_records_out_total",
            "Records leaving each pipeline stage.",
            "counter",
        );
        for (stage, (_, records_out)) in &events.pipeline_records {
            sample(
                &mut out,
                "mcp_pipeline_records_out_total",
                &[("stage", stage)],
                *records_out as f64,
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_is_cumulative_and_escaped() {
        let m = Metrics::default();
        m.observe_request("/api/v1/tasks/{id}", "GET", 200, 0.002);
        m.observe_request("/api/v1/tasks/{id}", "GET", 200, 20.0);
        m.task_completed("gen\"eric", 0.2);
        let text = m.render(3, &BTreeMap::new(), Some(&ClusterSnapshot::default()));
        assert!(text.contains(
            "mcp_http_requests_total{route=\"/api/v1/tasks/{id}\",method=\"GET\",status=\"200\"} 2\n"
        ));
        assert!(text.contains(
            "mcp_http_request_duration_seconds_bucket{route=\"/api/v1/tasks/{id}\",method=\"GET\",status=\"200\",le=\"0.0025\"} 1\n"
        ));
        assert!(text.contains(
            "mcp_http_request_duration_seconds_bucket{route=\"/api/v1/tasks/{id}\",method=\"GET\",status=\"200\",le=\"+Inf\"} 2\n"
        ));
        assert!(text.contains("mcp_websocket_connections 3\n"));
        assert!(text.contains("mcp_task_duration_seconds_count{type=\"gen\\\"eric\"} 1\n"));
        // Followers export no cluster-wide series.
        let follower = m.render(0, &BTreeMap::new(), None);
        assert!(!follower.contains("mcp_task_duration_seconds"));
    }
}
