//! Idempotency for pipeline executions: a client's key (unique, so two racing requests with one
//! key make one execution) and the hash of the request it came with (so a replay with another
//! body is told apart and refused).

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const KEY_INDEX: &str = "idx_pipeline_executions_idempotency_key";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::columns::add(
            manager,
            PipelineExecutions::Table,
            [
                string_null(PipelineExecutions::IdempotencyKey),
                string_null(PipelineExecutions::RequestHash),
            ],
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name(KEY_INDEX)
                    .table(PipelineExecutions::Table)
                    .col(PipelineExecutions::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(KEY_INDEX)
                    .table(PipelineExecutions::Table)
                    .to_owned(),
            )
            .await?;
        crate::columns::drop(
            manager,
            PipelineExecutions::Table,
            [
                PipelineExecutions::IdempotencyKey,
                PipelineExecutions::RequestHash,
            ],
        )
        .await
    }
}

#[derive(DeriveIden)]
enum PipelineExecutions {
    Table,
    IdempotencyKey,
    RequestHash,
}
