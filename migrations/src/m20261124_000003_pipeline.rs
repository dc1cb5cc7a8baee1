//! The pipeline's bookkeeping: uploaded datasets, which stage an execution is in, and per-shard
//! statistics and errors on stage runs. One stage run per (execution, stage, shard), so enqueuing
//! a stage twice cannot create a second set of shards.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Datasets::Table)
                    .if_not_exists()
                    .col(uuid(Datasets::Id).primary_key())
                    .col(string(Datasets::Name))
                    .col(string(Datasets::Format))
                    .col(big_integer(Datasets::Records))
                    .col(big_integer(Datasets::Bytes))
                    .col(string(Datasets::Sha256))
                    .col(string(Datasets::ArtifactKey))
                    .col(string_null(Datasets::CreatedBy))
                    .col(timestamp_with_time_zone(Datasets::CreatedAt))
                    .to_owned(),
            )
            .await?;
        crate::columns::add(
            manager,
            PipelineExecutions::Table,
            [
                string_null(PipelineExecutions::CurrentStage),
                integer(PipelineExecutions::Shards).default(0).to_owned(),
            ],
        )
        .await?;
        crate::columns::add(
            manager,
            StageRuns::Table,
            [
                json_binary_null(StageRuns::Stats),
                text_null(StageRuns::Error),
            ],
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_stage_runs_unique_shard")
                    .table(StageRuns::Table)
                    .col(StageRuns::ExecutionId)
                    .col(StageRuns::Stage)
                    .col(StageRuns::Shard)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_stage_runs_unique_shard")
                    .table(StageRuns::Table)
                    .to_owned(),
            )
            .await?;
        crate::columns::drop(
            manager,
            StageRuns::Table,
            [StageRuns::Stats, StageRuns::Error],
        )
        .await?;
        crate::columns::drop(
            manager,
            PipelineExecutions::Table,
            [PipelineExecutions::CurrentStage, PipelineExecutions::Shards],
        )
        .await?;
        manager
            .drop_table(Table::drop().table(Datasets::Table).if_exists().to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Datasets {
    Table,
    Id,
    Name,
    Format,
    Records,
    Bytes,
    Sha256,
    ArtifactKey,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum PipelineExecutions {
    Table,
    CurrentStage,
    Shards,
}

#[derive(DeriveIden)]
enum StageRuns {
    Table,
    ExecutionId,
    Stage,
    Shard,
    Stats,
    Error,
}
