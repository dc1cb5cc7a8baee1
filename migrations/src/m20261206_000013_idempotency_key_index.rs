//! PostgreSQL: the unique index on task idempotency keys leaves out the tasks without one.
//!
//! PostgreSQL indexes NULLs, and re-inserts a row into every index on each update that changes an
//! indexed column, so a unique constraint on a column that is nearly always NULL cost an entry
//! per task and per transition. SQLite keeps its inline constraint: it only touches an index
//! whose columns change, and its inline unique index cannot be dropped without rebuilding the
//! table. Inserts that may conflict name the index's condition (`ON CONFLICT (idempotency_key)
//! WHERE idempotency_key IS NOT NULL`), which both databases accept.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS idx_tasks_idempotency_key ON tasks (idempotency_key) \
             WHERE idempotency_key IS NOT NULL",
        )
        .await?;
        db.execute_unprepared(
            "ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_idempotency_key_key",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "ALTER TABLE tasks ADD CONSTRAINT tasks_idempotency_key_key UNIQUE (idempotency_key)",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_tasks_idempotency_key")
            .await?;
        Ok(())
    }
}
