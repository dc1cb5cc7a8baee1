//! The first schema: users and their refresh tokens, agents with their allocations and the
//! capability catalog, tasks, pipeline executions, stage runs and the audit trail.

// The migration trait is declared with `async_trait` over `&SchemaManager` with an elided
// lifetime; spelling it out makes the signatures differ from the trait.
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
                    .table(Users::Table)
                    .if_not_exists()
                    .col(uuid(Users::Id).primary_key())
                    .col(string_uniq(Users::Username))
                    .col(string(Users::PasswordHash))
                    .col(string(Users::Role))
                    .col(boolean(Users::Disabled).default(false))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .if_not_exists()
                    .col(uuid(RefreshTokens::Id).primary_key())
                    .col(uuid(RefreshTokens::UserId))
                    .col(uuid(RefreshTokens::FamilyId))
                    .col(timestamp_with_time_zone(RefreshTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(RefreshTokens::UsedAt))
                    .col(boolean(RefreshTokens::Revoked).default(false))
                    .col(timestamp_with_time_zone(RefreshTokens::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_tokens_family")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::FamilyId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Agents::Table)
                    .if_not_exists()
                    .col(uuid(Agents::Id).primary_key())
                    .col(string_uniq(Agents::Name))
                    .col(string(Agents::AgentType))
                    .col(json_binary(Agents::Capabilities))
                    .col(string(Agents::Status))
                    .col(integer(Agents::MaxConcurrency))
                    .col(integer(Agents::CurrentLoad).default(0))
                    .col(json_binary(Agents::Metadata))
                    .col(json_binary_null(Agents::Configuration))
                    .col(text_null(Agents::ConfigurationSealed))
                    .col(string_uniq(Agents::KeyHash))
                    .col(big_integer(Agents::HeartbeatCount).default(0))
                    .col(timestamp_with_time_zone(Agents::RegisteredAt))
                    .col(timestamp_with_time_zone(Agents::LastSeen))
                    .col(timestamp_with_time_zone(Agents::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Agents::DeletedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_agents_updated")
                    .table(Agents::Table)
                    .col(Agents::UpdatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AgentAllocations::Table)
                    .if_not_exists()
                    .col(uuid(AgentAllocations::Id).primary_key())
                    .col(uuid(AgentAllocations::AgentId))
                    .col(integer(AgentAllocations::Slots))
                    .col(string_null(AgentAllocations::Purpose))
                    .col(timestamp_with_time_zone(AgentAllocations::ExpiresAt))
                    .col(timestamp_with_time_zone(AgentAllocations::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_allocations_expiry")
                    .table(AgentAllocations::Table)
                    .col(AgentAllocations::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Capabilities::Table)
                    .if_not_exists()
                    .col(string(Capabilities::Name).primary_key())
                    .col(string_null(Capabilities::Description))
                    .col(string_null(Capabilities::CreatedBy))
                    .col(timestamp_with_time_zone(Capabilities::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .if_not_exists()
                    .col(uuid(Tasks::Id).primary_key())
                    .col(string(Tasks::TaskType))
                    .col(string(Tasks::Priority))
                    .col(string(Tasks::Status))
                    .col(string(Tasks::Queue))
                    .col(json_binary(Tasks::RequiredCapabilities))
                    .col(json_binary(Tasks::Payload))
                    .col(json_binary_null(Tasks::Result))
                    .col(text_null(Tasks::Error))
                    .col(text_null(Tasks::Message))
                    .col(integer(Tasks::Progress).default(0))
                    .col(uuid_null(Tasks::AgentId))
                    .col(integer(Tasks::Attempt).default(0))
                    .col(integer(Tasks::MaxAttempts))
                    .col(integer(Tasks::TimeoutSeconds))
                    .col(string_null(Tasks::IdempotencyKey).unique_key())
                    .col(string_null(Tasks::RequestHash))
                    .col(timestamp_with_time_zone_null(Tasks::RunAt))
                    .col(uuid_null(Tasks::ExecutionId))
                    .col(string_null(Tasks::Stage))
                    .col(string_null(Tasks::CreatedBy))
                    .col(timestamp_with_time_zone(Tasks::CreatedAt))
                    .col(timestamp_with_time_zone(Tasks::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Tasks::StartedAt))
                    .col(timestamp_with_time_zone_null(Tasks::FinishedAt))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_tasks_status", Tasks::Status),
            ("idx_tasks_agent", Tasks::AgentId),
            ("idx_tasks_execution", Tasks::ExecutionId),
            ("idx_tasks_created", Tasks::CreatedAt),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Tasks::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(PipelineExecutions::Table)
                    .if_not_exists()
                    .col(uuid(PipelineExecutions::Id).primary_key())
                    .col(string(PipelineExecutions::Status))
                    .col(string(PipelineExecutions::Priority))
                    .col(uuid_null(PipelineExecutions::DatasetId))
                    .col(json_binary(PipelineExecutions::Options))
                    .col(json_binary_null(PipelineExecutions::Results))
                    .col(json_binary_null(PipelineExecutions::Metrics))
                    .col(text_null(PipelineExecutions::Error))
                    .col(string_null(PipelineExecutions::CreatedBy))
                    .col(timestamp_with_time_zone(PipelineExecutions::CreatedAt))
                    .col(timestamp_with_time_zone(PipelineExecutions::UpdatedAt))
                    .col(timestamp_with_time_zone_null(
                        PipelineExecutions::FinishedAt,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(StageRuns::Table)
                    .if_not_exists()
                    .col(uuid(StageRuns::Id).primary_key())
                    .col(uuid(StageRuns::ExecutionId))
                    .col(string(StageRuns::Stage))
                    .col(integer(StageRuns::Shard).default(0))
                    .col(string(StageRuns::Status))
                    .col(uuid_null(StageRuns::TaskId))
                    .col(uuid_null(StageRuns::AgentId))
                    .col(big_integer(StageRuns::RecordsIn).default(0))
                    .col(big_integer(StageRuns::RecordsOut).default(0))
                    .col(integer(StageRuns::Progress).default(0))
                    .col(timestamp_with_time_zone_null(StageRuns::StartedAt))
                    .col(timestamp_with_time_zone_null(StageRuns::FinishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_stage_runs_execution")
                    .table(StageRuns::Table)
                    .col(StageRuns::ExecutionId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditRecords::Table)
                    .if_not_exists()
                    .col(pk_auto(AuditRecords::Id).big_integer())
                    .col(timestamp_with_time_zone(AuditRecords::OccurredAt))
                    .col(string(AuditRecords::Actor))
                    .col(string(AuditRecords::Action))
                    .col(string_null(AuditRecords::Target))
                    .col(string(AuditRecords::Outcome))
                    .col(string_null(AuditRecords::RequestId))
                    .col(json_binary_null(AuditRecords::Details))
                    .col(string(AuditRecords::PrevHash))
                    .col(string(AuditRecords::Hash))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_occurred")
                    .table(AuditRecords::Table)
                    .col(AuditRecords::OccurredAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditRecords::Table.into_iden(),
            StageRuns::Table.into_iden(),
            PipelineExecutions::Table.into_iden(),
            Tasks::Table.into_iden(),
            Capabilities::Table.into_iden(),
            AgentAllocations::Table.into_iden(),
            Agents::Table.into_iden(),
            RefreshTokens::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    PasswordHash,
    Role,
    Disabled,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Id,
    UserId,
    FamilyId,
    ExpiresAt,
    UsedAt,
    Revoked,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Agents {
    Table,
    Id,
    Name,
    AgentType,
    Capabilities,
    Status,
    MaxConcurrency,
    CurrentLoad,
    Metadata,
    Configuration,
    ConfigurationSealed,
    KeyHash,
    HeartbeatCount,
    RegisteredAt,
    LastSeen,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum AgentAllocations {
    Table,
    Id,
    AgentId,
    Slots,
    Purpose,
    ExpiresAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Capabilities {
    Table,
    Name,
    Description,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    TaskType,
    Priority,
    Status,
    Queue,
    RequiredCapabilities,
    Payload,
    Result,
    Error,
    Message,
    Progress,
    AgentId,
    Attempt,
    MaxAttempts,
    TimeoutSeconds,
    IdempotencyKey,
    RequestHash,
    RunAt,
    ExecutionId,
    Stage,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum PipelineExecutions {
    Table,
    Id,
    Status,
    Priority,
    DatasetId,
    Options,
    Results,
    Metrics,
    Error,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum StageRuns {
    Table,
    Id,
    ExecutionId,
    Stage,
    Shard,
    Status,
    TaskId,
    AgentId,
    RecordsIn,
    RecordsOut,
    Progress,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum AuditRecords {
    Table,
    Id,
    OccurredAt,
    Actor,
    Action,
    Target,
    Outcome,
    RequestId,
    Details,
    PrevHash,
    Hash,
}
