//! Tasks remember the trace context of the request that created them, so the worker that runs
//! one can record its job as part of that trace.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::columns::add(manager, Tasks::Table, [string_null(Tasks::Traceparent)]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::columns::drop(manager, Tasks::Table, [Tasks::Traceparent]).await
    }
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Traceparent,
}
