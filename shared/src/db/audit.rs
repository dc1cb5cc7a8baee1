//! The audit trail: append-only and hash-chained (each record carries the hash of the previous
//! one), so an edited or deleted row shows. Appends are serialised — by a process lock, and on
//! PostgreSQL also by a transaction-scoped advisory lock shared by every replica.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use serde_json::{Value, json};

use crate::{
    Result,
    crypto::sha256_hex,
    db::Database,
    entities::audit_records::{self, Column, Entity},
};

/// The hash the first record chains from.
pub const GENESIS: &str = "genesis";
const ADVISORY_LOCK_KEY: i64 = 0x6d63_705f_6175_6469; // "mcp_audi"

static APPEND_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    pub request_id: Option<String>,
    pub details: Option<Value>,
}

/// The chained hash of one record's content.
pub fn record_hash(prev_hash: &str, occurred_at: DateTime<Utc>, e: &AuditEntry) -> String {
    let canonical = json!([
        prev_hash,
        occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        e.actor,
        e.action,
        e.target,
        e.outcome,
        e.request_id,
        e.details,
    ]);
    sha256_hex(canonical.to_string().as_bytes())
}

pub async fn append(db: &Database, entry: AuditEntry) -> Result<()> {
    let _guard = APPEND_LOCK.lock().await;
    if db.conn.get_database_backend() == DatabaseBackend::Postgres {
        // Replicas serialise on an advisory lock held for the transaction.
        let txn = db.conn.begin().await?;
        txn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})"
        ))
        .await?;
        insert_chained(&txn, entry).await?;
        txn.commit().await?;
    } else {
        // SQLite serves one process, whose appends the lock above already serialises. A
        // deferred transaction here would have to upgrade from read to write, which SQLite
        // refuses (SQLITE_BUSY, without waiting) while another connection writes.
        insert_chained(&db.conn, entry).await?;
    }
    Ok(())
}

async fn insert_chained(conn: &impl ConnectionTrait, entry: AuditEntry) -> Result<()> {
    let prev_hash = Entity::find()
        .order_by_desc(Column::Id)
        .limit(1)
        .one(conn)
        .await?
        .map(|r| r.hash)
        .unwrap_or_else(|| GENESIS.to_string());
    let occurred_at = Utc::now().trunc_subsecs(6);
    let hash = record_hash(&prev_hash, occurred_at, &entry);
    audit_records::ActiveModel {
        occurred_at: Set(occurred_at),
        actor: Set(entry.actor),
        action: Set(entry.action),
        target: Set(entry.target),
        outcome: Set(entry.outcome),
        request_id: Set(entry.request_id),
        details: Set(entry.details),
        prev_hash: Set(prev_hash),
        hash: Set(hash),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(())
}
