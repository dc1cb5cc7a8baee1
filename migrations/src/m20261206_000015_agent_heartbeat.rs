//! Each agent may beat at its own pace: built-in worker processes beat every second, so a killed
//! one is found silent (and its running attempts released) within seconds, while external
//! agents keep the deployment's `MCP_AGENT_HEARTBEAT_MS`.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::columns::add(manager, Agents::Table, [integer_null(Agents::HeartbeatMs)]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::columns::drop(manager, Agents::Table, [Agents::HeartbeatMs]).await
    }
}

#[derive(DeriveIden)]
enum Agents {
    Table,
    HeartbeatMs,
}
