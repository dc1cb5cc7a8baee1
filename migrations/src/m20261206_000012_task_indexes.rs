//! Task indexes that cover only the rows each query looks for.
//!
//! Most task rows are finished and never looked up by status again, but every index on the
//! table took an entry for every row, and PostgreSQL re-inserts into every index on each update
//! that changes an indexed column (no HOT update). The full indexes on status, agent, creation
//! time, execution, key id and the dispatch pair are replaced by partial ones: a task that is
//! waiting, running or finished sits only in the few indexes for that state, and the queries
//! repeat each index's condition word for word (see `mcp_shared::db::tasks::partial`).

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const DROPPED: [&str; 6] = [
    "idx_tasks_status",
    "idx_tasks_agent",
    "idx_tasks_execution",
    "idx_tasks_created",
    "idx_tasks_dispatch",
    "idx_tasks_sealed_key",
];

/// (name, columns, condition)
const CREATED: [(&str, &str, &str); 9] = [
    // Due work the dispatcher owes a push, oldest first per queue.
    (
        "idx_tasks_owed",
        "queue, id",
        "status IN ('pending', 'scheduled', 'failed') AND enqueued_at IS NULL",
    ),
    // Work pushed to the queue backend and not started, oldest push first per queue.
    (
        "idx_tasks_pushed",
        "queue, enqueued_at",
        "status IN ('pending', 'scheduled', 'failed') AND enqueued_at IS NOT NULL",
    ),
    // Running attempts, by when their lease runs out.
    (
        "idx_tasks_running",
        "lease_expires_at",
        "status = 'running'",
    ),
    // What each agent holds.
    (
        "idx_tasks_held",
        "agent_id",
        "status IN ('assigned', 'running')",
    ),
    // Each agent's finished attempts, newest last (agent statistics).
    (
        "idx_tasks_agent_finished",
        "agent_id, finished_at",
        "status IN ('completed', 'failed', 'dead')",
    ),
    // Finished tasks retention has not purged yet.
    (
        "idx_tasks_purgeable",
        "finished_at",
        "status IN ('completed', 'dead', 'cancelled') AND purged_at IS NULL",
    ),
    // Every task that is not completed, by status (lists of dead, failed, running… tasks).
    ("idx_tasks_open", "status, id", "status <> 'completed'"),
    (
        "idx_tasks_execution",
        "execution_id",
        "execution_id IS NOT NULL",
    ),
    (
        "idx_tasks_sealed_key",
        "sealed_key",
        "sealed_key IS NOT NULL",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for name in DROPPED {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        for (name, columns, condition) in CREATED {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {name} ON tasks ({columns}) WHERE {condition}"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _, _) in CREATED {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        for (name, column) in [
            ("idx_tasks_status", "status"),
            ("idx_tasks_agent", "agent_id"),
            ("idx_tasks_execution", "execution_id"),
            ("idx_tasks_created", "created_at"),
            ("idx_tasks_dispatch", "status, enqueued_at"),
            ("idx_tasks_sealed_key", "sealed_key"),
        ] {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {name} ON tasks ({column})"
            ))
            .await?;
        }
        Ok(())
    }
}
