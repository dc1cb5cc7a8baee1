//! The task engine's bookkeeping: when a task's job was pushed (`enqueued_at`), until when a
//! running attempt is held (`lease_expires_at`), cooperative cancellation, and paused queues.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::columns::add(
            manager,
            Tasks::Table,
            [
                timestamp_with_time_zone_null(Tasks::EnqueuedAt),
                timestamp_with_time_zone_null(Tasks::LeaseExpiresAt),
                boolean(Tasks::CancelRequested).default(false).to_owned(),
            ],
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tasks_dispatch")
                    .table(Tasks::Table)
                    .col(Tasks::Status)
                    .col(Tasks::EnqueuedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(QueueStates::Table)
                    .if_not_exists()
                    .col(string(QueueStates::Name).primary_key())
                    .col(boolean(QueueStates::Paused).default(false))
                    .col(timestamp_with_time_zone(QueueStates::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(QueueStates::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_tasks_dispatch")
                    .table(Tasks::Table)
                    .to_owned(),
            )
            .await?;
        crate::columns::drop(
            manager,
            Tasks::Table,
            [
                Tasks::EnqueuedAt,
                Tasks::LeaseExpiresAt,
                Tasks::CancelRequested,
            ],
        )
        .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Status,
    EnqueuedAt,
    LeaseExpiresAt,
    CancelRequested,
}

#[derive(DeriveIden)]
enum QueueStates {
    Table,
    Name,
    Paused,
    UpdatedAt,
}
