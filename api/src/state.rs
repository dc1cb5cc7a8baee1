//! What every handler can reach, built once at start.

use std::sync::Arc;

use mcp_shared::{Settings, auth::JwtKeys, bus::EventBus, db::Database, queue::JobQueue};

#[derive(Debug, Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Database,
    pub queue: Arc<dyn JobQueue>,
    pub bus: Arc<dyn EventBus>,
    pub jwt: Arc<JwtKeys>,
}
