//! Database migrations, applied in order on every start of `mcp-api` and by `mcp-api migrate`.
//!
//! A merged migration is never edited: schema changes get a new file appended to [`Migrator::migrations`].

pub use sea_orm_migration::{MigrationStatus, prelude::*};

mod columns;
mod m20261124_000001_init;
mod m20261124_000002_task_engine;
mod m20261124_000003_pipeline;
mod m20261125_000004_security;
mod m20261125_000005_pipeline_idempotency;
mod m20261125_000010_task_traceparent;
mod m20261206_000011_embedded_queue_in_memory;
mod m20261206_000012_task_indexes;
mod m20261206_000013_idempotency_key_index;
mod m20261206_000014_waiting_index;
mod m20261206_000015_agent_heartbeat;
mod m20261210_000020_audit_keys;
mod m20261210_000021_retention_marks;
mod m20261211_000022_agent_metadata_sealed;
mod m20261212_000023_schedules;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_init::Migration),
            Box::new(m20261124_000002_task_engine::Migration),
            Box::new(m20261124_000003_pipeline::Migration),
            Box::new(m20261125_000004_security::Migration),
            Box::new(m20261125_000005_pipeline_idempotency::Migration),
            Box::new(m20261125_000010_task_traceparent::Migration),
            Box::new(m20261206_000011_embedded_queue_in_memory::Migration),
            Box::new(m20261206_000012_task_indexes::Migration),
            Box::new(m20261206_000013_idempotency_key_index::Migration),
            Box::new(m20261206_000014_waiting_index::Migration),
            Box::new(m20261206_000015_agent_heartbeat::Migration),
            Box::new(m20261210_000020_audit_keys::Migration),
            Box::new(m20261210_000021_retention_marks::Migration),
            Box::new(m20261211_000022_agent_metadata_sealed::Migration),
            Box::new(m20261212_000023_schedules::Migration),
        ]
    }
}
