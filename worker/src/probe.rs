//! A worker process's own small HTTP port (`MCP_WORKER_PORT`), for its orchestrator and its
//! scraper: `/health` (the process answers), `/ready` (registered, and its database and queue
//! answer) and `/metrics` (Prometheus text: this process's jobs and slots).

use std::{
    fmt::Write,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::Instant,
};

use poem::{
    EndpointExt, Response, Route, Server, get, handler,
    http::StatusCode,
    listener::{Listener, TcpListener},
    web::{Data, Json},
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::WorkerDeps;

/// This process's figures, updated by the pool as jobs run.
#[derive(Debug, Default)]
pub struct Stats {
    /// Registered as an agent: it can take work.
    pub registered: AtomicBool,
    /// Jobs running now.
    pub running: AtomicI64,
    /// Jobs finished with (their outcome recorded, or nothing left to do).
    pub done: AtomicU64,
    /// Jobs handed back to be delivered again (the outcome could not be recorded).
    pub redelivered: AtomicU64,
}

struct Probe {
    deps: Arc<WorkerDeps>,
    started: Instant,
}

/// Serves the port until `shutdown`; a port that cannot be bound stops the worker's start.
pub async fn serve(
    deps: Arc<WorkerDeps>,
    port: u16,
    shutdown: CancellationToken,
) -> mcp_shared::Result<tokio::task::JoinHandle<()>> {
    let address = format!("{}:{port}", deps.settings.host);
    // Bound before returning, so a port in use is an error at start, not a silent absence.
    let acceptor = TcpListener::bind(address.clone())
        .into_acceptor()
        .await
        .map_err(|e| mcp_shared::Error::Config(format!("MCP_WORKER_PORT: {address}: {e}")))?;
    let app = Route::new()
        .at("/health", get(health))
        .at("/ready", get(ready))
        .at("/metrics", get(metrics))
        .data(Arc::new(Probe {
            deps,
            started: Instant::now(),
        }));
    tracing::info!(%address, "worker probes and metrics");
    Ok(tokio::spawn(async move {
        let served = Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, shutdown.cancelled_owned(), None)
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "worker probe port stopped");
        }
    }))
}

#[handler]
fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

#[handler]
async fn ready(probe: Data<&Arc<Probe>>) -> Response {
    let deps = &probe.deps;
    let mut failed = Vec::new();
    if !deps.stats.registered.load(Ordering::Relaxed) {
        failed.push("registration");
    }
    if deps.db.ping().await.is_err() {
        failed.push("database");
    }
    if deps.queue.ping().await.is_err() {
        failed.push("queue");
    }
    let (status, body) = if failed.is_empty() {
        (StatusCode::OK, json!({"status": "ready"}))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "failed": failed}),
        )
    };
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

#[handler]
fn metrics(probe: Data<&Arc<Probe>>) -> Response {
    let s = &probe.deps.stats;
    let slots = probe.deps.settings.worker_concurrency;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "mcp_worker_jobs_running",
        "gauge",
        "Jobs this worker process is running now.",
        s.running.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "mcp_worker_slots",
        "gauge",
        "Jobs this worker process may run at once (MCP_WORKER_CONCURRENCY).",
        slots.to_string(),
    );
    metric(
        "mcp_worker_jobs_done_total",
        "counter",
        "Jobs this worker process finished with.",
        s.done.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "mcp_worker_jobs_redelivered_total",
        "counter",
        "Jobs handed back to be delivered again because their outcome could not be recorded.",
        s.redelivered.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "mcp_worker_registered",
        "gauge",
        "1 once this worker process is registered as an agent and can take work.",
        u8::from(s.registered.load(Ordering::Relaxed)).to_string(),
    );
    metric(
        "mcp_worker_uptime_seconds",
        "gauge",
        "Seconds since this worker process started.",
        format!("{:.3}", probe.started.elapsed().as_secs_f64()),
    );
    Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
