//! The audit trail: append-only and hash-chained (each record carries the hash of the previous
//! one), so an edited or deleted row shows. Appends are serialised — by a process lock, and on
//! PostgreSQL also by a transaction-scoped advisory lock shared by every replica.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use serde_json::{Value, json};

use crate::{
    Result,
    crypto::sha256_hex,
    db::Database,
    entities::{
        audit_anchors,
        audit_records::{self, Column, Entity},
    },
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

/// Appends entries in order, chained, in one transaction: the group commit behind the API's
/// audit writer, so a burst of requests costs one lock and one round trip, not one each.
pub async fn append(db: &Database, entries: Vec<AuditEntry>) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let _guard = APPEND_LOCK.lock().await;
    if db.conn.get_database_backend() == DatabaseBackend::Postgres {
        // Replicas serialise on an advisory lock held for the transaction.
        let txn = db.conn.begin().await?;
        lock_chain(&txn).await?;
        insert_chained(&txn, entries).await?;
        txn.commit().await?;
    } else {
        // SQLite serves one process, whose appends the lock above already serialises. A
        // deferred transaction here would have to upgrade from read to write, which SQLite
        // refuses (SQLITE_BUSY, without waiting) while another connection writes; its single
        // pooled connection makes the multi-row insert atomic enough.
        insert_chained(&db.conn, entries).await?;
    }
    Ok(())
}

async fn lock_chain(conn: &impl ConnectionTrait) -> Result<()> {
    conn.execute_unprepared(&format!(
        "SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})"
    ))
    .await?;
    Ok(())
}

/// The hash the next record chains from: the newest record's, else the newest anchor's, else
/// [`GENESIS`].
async fn head_hash(conn: &impl ConnectionTrait) -> Result<String> {
    if let Some(last) = Entity::find()
        .order_by_desc(Column::Id)
        .limit(1)
        .one(conn)
        .await?
    {
        return Ok(last.hash);
    }
    Ok(latest_anchor(conn)
        .await?
        .map(|a| a.anchor_hash)
        .unwrap_or_else(|| GENESIS.to_string()))
}

async fn latest_anchor(conn: &impl ConnectionTrait) -> Result<Option<audit_anchors::Model>> {
    Ok(audit_anchors::Entity::find()
        .order_by_desc(audit_anchors::Column::Id)
        .limit(1)
        .one(conn)
        .await?)
}

async fn insert_chained(conn: &impl ConnectionTrait, entries: Vec<AuditEntry>) -> Result<()> {
    let mut prev_hash = head_hash(conn).await?;
    let occurred_at = Utc::now().trunc_subsecs(6);
    let mut rows = Vec::with_capacity(entries.len());
    for entry in entries {
        let hash = record_hash(&prev_hash, occurred_at, &entry);
        rows.push(audit_records::ActiveModel {
            occurred_at: Set(occurred_at),
            actor: Set(entry.actor),
            action: Set(entry.action),
            target: Set(entry.target),
            outcome: Set(entry.outcome),
            request_id: Set(entry.request_id),
            details: Set(entry.details),
            prev_hash: Set(std::mem::replace(&mut prev_hash, hash.clone())),
            hash: Set(hash),
            ..Default::default()
        });
    }
    // Bounded statements: PostgreSQL allows 65,535 bind parameters, and a record takes 9.
    for chunk in rows.chunks(1_000) {
        Entity::insert_many(chunk.to_vec()).exec(conn).await?;
    }
    Ok(())
}

/// Filters for [`list`]; `after` is the last id of the previous page.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub after: Option<i64>,
    pub limit: u64,
}

/// Records oldest first, so a cursor walk reads the trail in the order it was written.
pub async fn list(
    conn: &impl ConnectionTrait,
    f: &ListFilter,
) -> Result<Vec<audit_records::Model>> {
    let mut q = Entity::find();
    if let Some(actor) = &f.actor {
        q = q.filter(Column::Actor.eq(actor.as_str()));
    }
    if let Some(action) = &f.action {
        // `task.*` selects a family of actions.
        q = match action.strip_suffix('*') {
            Some(prefix) => q.filter(Column::Action.starts_with(prefix)),
            None => q.filter(Column::Action.eq(action.as_str())),
        };
    }
    if let Some(outcome) = &f.outcome {
        q = q.filter(Column::Outcome.eq(outcome.as_str()));
    }
    if let Some(since) = f.since {
        q = q.filter(Column::OccurredAt.gte(since));
    }
    if let Some(until) = f.until {
        q = q.filter(Column::OccurredAt.lt(until));
    }
    if let Some(after) = f.after {
        q = q.filter(Column::Id.gt(after));
    }
    Ok(q.order_by_asc(Column::Id).limit(f.limit).all(conn).await?)
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub valid: bool,
    pub records_checked: u64,
    /// The first record whose hash or link does not match: edited, or the one after a deletion.
    pub first_broken_id: Option<i64>,
}

/// Walks the whole trail, recomputing each hash and checking each link. The first record must
/// chain from the latest retention anchor (or genesis), and come after the purged ids. A purge
/// committed during the walk moves the anchor: the walk then starts again rather than report a
/// break that is not there.
pub async fn verify(conn: &impl ConnectionTrait) -> Result<Verification> {
    let mut attempts = 0;
    loop {
        let anchor = latest_anchor(conn).await?.map(|a| a.id);
        let v = verify_once(conn).await?;
        attempts += 1;
        if v.valid || attempts == 3 || latest_anchor(conn).await?.map(|a| a.id) == anchor {
            return Ok(v);
        }
    }
}

async fn verify_once(conn: &impl ConnectionTrait) -> Result<Verification> {
    const PAGE: u64 = 2_000;
    let anchor = latest_anchor(conn).await?;
    let mut expected_prev = anchor
        .as_ref()
        .map(|a| a.anchor_hash.clone())
        .unwrap_or_else(|| GENESIS.to_string());
    let mut after = anchor.as_ref().map(|a| a.purged_through_id).unwrap_or(0);
    // A row at or below the anchor point survived a purge it should not have: someone wrote it.
    if let Some(a) = &anchor
        && let Some(row) = Entity::find()
            .filter(Column::Id.lte(a.purged_through_id))
            .order_by_asc(Column::Id)
            .one(conn)
            .await?
    {
        return Ok(Verification {
            valid: false,
            records_checked: 0,
            first_broken_id: Some(row.id),
        });
    }
    let mut checked = 0u64;
    loop {
        let page = Entity::find()
            .filter(Column::Id.gt(after))
            .order_by_asc(Column::Id)
            .limit(PAGE)
            .all(conn)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for row in &page {
            checked += 1;
            let entry = AuditEntry {
                actor: row.actor.clone(),
                action: row.action.clone(),
                target: row.target.clone(),
                outcome: row.outcome.clone(),
                request_id: row.request_id.clone(),
                details: row.details.clone(),
            };
            let recomputed = record_hash(&row.prev_hash, row.occurred_at, &entry);
            if row.prev_hash != expected_prev || row.hash != recomputed {
                return Ok(Verification {
                    valid: false,
                    records_checked: checked,
                    first_broken_id: Some(row.id),
                });
            }
            expected_prev = row.hash.clone();
        }
        if (page.len() as u64) < PAGE {
            break;
        }
    }
    Ok(Verification {
        valid: true,
        records_checked: checked,
        first_broken_id: None,
    })
}

/// Retention: deletes the records that occurred before `cutoff` and anchors the chain at the
/// purge point, so [`verify`] still proves the rest. The only way the application removes audit
/// records. Returns how many were purged.
pub async fn purge_before(db: &Database, cutoff: DateTime<Utc>) -> Result<u64> {
    let _guard = APPEND_LOCK.lock().await;
    let txn = db.conn.begin().await?;
    if db.conn.get_database_backend() == DatabaseBackend::Postgres {
        lock_chain(&txn).await?;
    }
    let Some(last) = Entity::find()
        .filter(Column::OccurredAt.lt(cutoff))
        .order_by_desc(Column::Id)
        .one(&txn)
        .await?
    else {
        txn.rollback().await?;
        return Ok(0);
    };
    let purged = Entity::delete_many()
        .filter(Column::Id.lte(last.id))
        .exec(&txn)
        .await?
        .rows_affected;
    audit_anchors::ActiveModel {
        purged_through_id: Set(last.id),
        anchor_hash: Set(last.hash),
        records_purged: Set(purged as i64),
        purged_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(purged)
}
