//! The single node's embedded queue moved from apalis-sqlite tables into memory (the task rows
//! were always the record). Its tables, left in existing SQLite files, are dropped.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What apalis-sqlite created: its jobs, its workers, and its own migration bookkeeping.
const LEFTOVERS: [&str; 3] = ["Jobs", "Workers", "_sqlx_migrations"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Sqlite {
            return Ok(());
        }
        for table in LEFTOVERS {
            manager
                .get_connection()
                .execute_unprepared(&format!("DROP TABLE IF EXISTS \"{table}\""))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, _: &SchemaManager) -> Result<(), DbErr> {
        // Nothing to restore: the rows they held were never the record of any task.
        Ok(())
    }
}
