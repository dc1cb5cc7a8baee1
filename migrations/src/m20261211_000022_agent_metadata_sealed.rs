//! With `ENCRYPT_AGENT_DATA` on, an agent's whole metadata is sealed at rest, beside its sealed
//! configuration: `metadata` then holds `{}` and readers get it opened by the API.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::columns::add(manager, Agents::Table, [text_null(Agents::MetadataSealed)]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::columns::drop(manager, Agents::Table, [Agents::MetadataSealed]).await
    }
}

#[derive(DeriveIden)]
enum Agents {
    Table,
    MetadataSealed,
}
