//! Workers: pull jobs by capability and tier, run the task's handler, record the outcome.
//!
//! # Layout
//! - [`pool`]: builds one apalis worker per queue (`mcp:{capability}:{tier}`) on the configured
//!   backend, wakes idle workers when jobs are pushed, and restarts a worker whose backend failed.
//! - [`gate`]: one pool of execution slots per process, served most urgent tier first with a
//!   starvation guard.
//! - [`executor`]: what happens to one delivered job: the lifecycle's start, the handler with
//!   its timeout and cancel check, then the lifecycle's complete or fail
//!   ([`mcp_shared::lifecycle`] decides and publishes every transition).
//! - [`handlers`]: the task handlers by task type.
//!
//! The same code runs inside the API process (single node) and in the `mcp-worker` binary.

pub mod analysis;
pub mod cli;
pub mod executor;
pub mod gate;
pub mod handlers;
pub mod identity;
pub mod pipeline;
pub mod pool;
pub mod probe;
pub mod stages;
pub mod step;
#[cfg(test)]
mod test_support;

use std::sync::Arc;

use mcp_shared::{
    Settings, artifacts::ArtifactStore, bus::EventBus, db::Database, lifecycle::Lifecycle,
    queue::JobQueue,
};

/// What a worker needs to run jobs; cloned into every handler call.
#[derive(Debug, Clone)]
pub struct WorkerDeps {
    pub db: Database,
    pub bus: Arc<dyn EventBus>,
    /// For pushing retries back onto the task's queue.
    pub queue: Arc<dyn JobQueue>,
    /// Every task transition (group-committed) and its event.
    pub lifecycle: Lifecycle,
    /// This process's agent id, recorded on the tasks it runs (set once registered).
    pub agent_id: Option<uuid::Uuid>,
    pub settings: Arc<Settings>,
    /// Where datasets and stage outputs live.
    pub artifacts: Arc<dyn ArtifactStore>,
    /// Opens sensitive task fields for the handlers.
    pub cipher: Arc<mcp_shared::crypto::KeyRing>,
    /// This process's figures, for its probe port.
    pub stats: Arc<probe::Stats>,
}

/// The default capabilities of the typed task types, whose tasks the built-in handlers run.
pub const TYPED_CAPABILITIES: &[&str] = &[
    "bias_detection",
    "validation",
    "analysis",
    "export",
    "pipeline_processing",
];

/// What `--capabilities all` names: `generic` and every typed task type's default capability.
pub const TASK_CAPABILITIES: &[&str] = &[
    "generic",
    "bias_detection",
    "validation",
    "analysis",
    "export",
    "pipeline_processing",
];

/// Everything the built-in handlers run: generic work, the typed task types and every pipeline
/// stage. A plain `mcp-worker` and the single node's embedded workers serve all of it unless
/// told otherwise, so a pipeline submitted to a fresh deployment never waits for a worker that
/// was never started.
pub fn builtin_capabilities() -> Vec<String> {
    TASK_CAPABILITIES
        .iter()
        .map(|c| c.to_string())
        .chain(
            mcp_shared::domain::pipeline::Stage::ALL
                .iter()
                .map(|s| s.capability()),
        )
        .collect()
}

/// Runs a standalone worker process (distributed mode) until `shutdown` completes (the binaries
/// pass [`mcp_shared::shutdown::signal`]); in-flight jobs then finish before it returns.
pub async fn run_standalone(
    settings: Settings,
    capabilities: Vec<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> mcp_shared::Result<()> {
    let url = settings.redis_url.clone().ok_or_else(|| {
        mcp_shared::Error::Config(
            "mcp-worker needs REDIS_URL (single node runs workers inside mcp-api)".into(),
        )
    })?;
    let db = Database::connect(settings.database_url.expose()).await?;
    let conn = mcp_shared::queue::connect_redis(url.expose()).await?;
    let client = redis::Client::open(url.expose())?;
    let queue = mcp_shared::queue::RedisQueue::new(conn.clone());
    let bus: Arc<dyn EventBus> = mcp_shared::bus::RedisStreamBus::publisher(conn);
    let cipher = Arc::new(mcp_shared::crypto::KeyRing::from_settings(&settings)?);
    let deps = WorkerDeps {
        lifecycle: Lifecycle::new(&db, bus.clone()),
        db,
        bus,
        queue: Arc::new(queue.clone()),
        artifacts: mcp_shared::artifacts::open(&settings.artifact_store, cipher.clone())?,
        cipher,
        settings: Arc::new(settings),
        agent_id: None,
        stats: Arc::default(),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    if let Some(endpoint) = &deps.settings.otel_endpoint {
        mcp_shared::otlp::init(endpoint, "mcp-worker", stop.clone());
    }
    let probes = match deps.settings.worker_port {
        Some(port) => Some(probe::serve(Arc::new(deps.clone()), port, stop.clone()).await?),
        None => None,
    };
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_signal.cancel();
    });
    let ran = pool::run(
        deps,
        pool::Source::Redis { queue, client },
        capabilities,
        stop.clone(),
    )
    .await;
    stop.cancel();
    if let Some(probes) = probes {
        let _ = probes.await;
    }
    ran
}
