//! One partial index for waiting tasks, whether or not their job has been pushed.
//!
//! Marking a task's job as pushed (`enqueued_at`) moved the row between two partial indexes,
//! which made each mark a full row update with index writes on PostgreSQL. With `enqueued_at`
//! in no index, and room left in each page (`fillfactor`), the mark is a heap-only update there.
//! The dispatcher reads waiting tasks of one queue in id order and skips those already pushed
//! (at most a queue's capacity, all at the front).

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_tasks_waiting ON tasks (queue, id) \
             WHERE status IN ('pending', 'scheduled', 'failed')",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_tasks_owed")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_tasks_pushed")
            .await?;
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            db.execute_unprepared("ALTER TABLE tasks SET (fillfactor = 85)")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_tasks_owed ON tasks (queue, id) \
             WHERE status IN ('pending', 'scheduled', 'failed') AND enqueued_at IS NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_tasks_pushed ON tasks (queue, enqueued_at) \
             WHERE status IN ('pending', 'scheduled', 'failed') AND enqueued_at IS NOT NULL",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_tasks_waiting")
            .await?;
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            db.execute_unprepared("ALTER TABLE tasks RESET (fillfactor)")
                .await?;
        }
        Ok(())
    }
}
