//! Recurring schedules and the history of their occurrences. One row per (schedule,
//! occurrence) in `schedule_runs`: the unique index is what makes an occurrence fire once
//! however many replicas find it due.

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
                    .table(Schedules::Table)
                    .if_not_exists()
                    .col(uuid(Schedules::Id).primary_key())
                    .col(string(Schedules::Name))
                    .col(string_null(Schedules::Cron))
                    .col(integer_null(Schedules::IntervalSeconds))
                    .col(timestamp_with_time_zone(Schedules::StartAt))
                    .col(string(Schedules::TimeZone))
                    .col(string(Schedules::TemplateKind))
                    .col(json_binary(Schedules::Template))
                    .col(string(Schedules::OverlapPolicy))
                    .col(string(Schedules::CatchUpPolicy))
                    .col(boolean(Schedules::Paused).default(false))
                    .col(timestamp_with_time_zone_null(Schedules::NextRunAt))
                    .col(uuid(Schedules::CreatorId))
                    .col(string(Schedules::CreatedBy))
                    .col(timestamp_with_time_zone(Schedules::CreatedAt))
                    .col(timestamp_with_time_zone(Schedules::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ScheduleRuns::Table)
                    .if_not_exists()
                    .col(uuid(ScheduleRuns::Id).primary_key())
                    .col(uuid(ScheduleRuns::ScheduleId))
                    .col(timestamp_with_time_zone(ScheduleRuns::OccurrenceAt))
                    .col(string(ScheduleRuns::Outcome))
                    .col(uuid_null(ScheduleRuns::TaskId))
                    .col(uuid_null(ScheduleRuns::ExecutionId))
                    .col(text_null(ScheduleRuns::Error))
                    .col(timestamp_with_time_zone(ScheduleRuns::FiredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_schedule_runs_occurrence")
                    .table(ScheduleRuns::Table)
                    .col(ScheduleRuns::ScheduleId)
                    .col(ScheduleRuns::OccurrenceAt)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The firing loop's queries, run by every replica twice a second: active schedules by
        // due time, and runs left `firing` (a handful at most, however long the history grows).
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_schedules_due ON schedules (next_run_at) \
             WHERE paused = false",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_schedule_runs_firing ON schedule_runs (fired_at) \
             WHERE outcome = 'firing'",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ScheduleRuns::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Schedules::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Id,
    Name,
    Cron,
    IntervalSeconds,
    StartAt,
    TimeZone,
    TemplateKind,
    Template,
    OverlapPolicy,
    CatchUpPolicy,
    Paused,
    NextRunAt,
    CreatorId,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ScheduleRuns {
    Table,
    Id,
    ScheduleId,
    OccurrenceAt,
    Outcome,
    TaskId,
    ExecutionId,
    Error,
    FiredAt,
}
