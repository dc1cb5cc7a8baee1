//! Retention reaches datasets and pipeline executions: `purged_at` marks a dataset whose bytes,
//! and an execution whose stage outputs, exports, report, results and error, the retention
//! purge removed (the rows stay, as tasks' do). Partial indexes find what is still to purge.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::columns::add(
            manager,
            Datasets::Table,
            [timestamp_with_time_zone_null(Datasets::PurgedAt)],
        )
        .await?;
        crate::columns::add(
            manager,
            PipelineExecutions::Table,
            [timestamp_with_time_zone_null(PipelineExecutions::PurgedAt)],
        )
        .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_datasets_unpurged ON datasets (created_at) \
             WHERE purged_at IS NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_pipeline_executions_unpurged \
             ON pipeline_executions (finished_at) WHERE purged_at IS NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS idx_pipeline_executions_unpurged")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_datasets_unpurged")
            .await?;
        crate::columns::drop(
            manager,
            PipelineExecutions::Table,
            [PipelineExecutions::PurgedAt],
        )
        .await?;
        crate::columns::drop(manager, Datasets::Table, [Datasets::PurgedAt]).await
    }
}

#[derive(DeriveIden)]
enum Datasets {
    Table,
    PurgedAt,
}

#[derive(DeriveIden)]
enum PipelineExecutions {
    Table,
    PurgedAt,
}
