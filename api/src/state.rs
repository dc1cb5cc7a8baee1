//! What every handler and service can reach, built once at start. Each component here gets its
//! dependencies when it is built and never reaches back into the state.

use std::sync::Arc;

use mcp_shared::{
    Settings, artifacts::ArtifactStore, auth::JwtKeys, bus::EventBus, crypto::KeyRing,
    db::Database, lifecycle::Lifecycle, queue::JobQueue,
};

use crate::{
    audit::AuditLog, connections::Connections, directory::AgentDirectory, dispatcher::Dispatcher,
    observability::Observability, security::Guard,
};

#[derive(Debug, Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Database,
    pub queue: Arc<dyn JobQueue>,
    pub bus: Arc<dyn EventBus>,
    /// Every task transition and its event.
    pub lifecycle: Lifecycle,
    pub jwt: Arc<JwtKeys>,
    /// Seals secret fields (agent configuration secrets, sensitive task payload fields).
    pub cipher: Arc<KeyRing>,
    /// Registered agents, indexed for discovery and assignment.
    pub directory: Arc<AgentDirectory>,
    /// Feeds due tasks to their queues.
    pub dispatcher: Arc<Dispatcher>,
    /// Redis, in distributed mode (leader lock, queue counts).
    pub redis: Option<redis::aio::ConnectionManager>,
    /// Datasets, stage outputs and exports.
    pub artifacts: Arc<dyn ArtifactStore>,
    /// Open WebSocket connections, against `MAX_AGENT_CONNECTIONS`.
    pub connections: Arc<Connections>,
    /// Group-commits audit records.
    pub audit: AuditLog,
    /// The audit chain's keys and where its head is published.
    pub chain: mcp_shared::db::audit::Chain,
    /// Rate limits, login lockouts and revoked tokens.
    pub guard: Guard,
    /// Metrics, the request window and alerts.
    pub observability: Arc<Observability>,
}
