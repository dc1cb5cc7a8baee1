//! The audit trail: append-only, hash-chained (each record carries the hash of the previous
//! one) and keyed (each record's hash is authenticated by an HMAC under a key of the ring), so an
//! edited, inserted or re-chained row shows. Retention anchors form a keyed chain of their own.
//! After every append the chain's head (the newest id and hash, signed) is published outside
//! the table — in Redis in the distributed mode, in a file beside a SQLite database otherwise —
//! and a signed checkpoint is written to the artifact store now and then, so deleting the
//! newest records shows too, back to the last published head.
//!
//! Appends are serialised: by a process lock, and across processes by the database — a
//! transaction-scoped advisory lock on PostgreSQL, `BEGIN IMMEDIATE` (the write lock taken
//! before the head is read) on SQLite.

use std::{path::PathBuf, sync::Arc};

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    Error, Result,
    artifacts::ArtifactStore,
    crypto::{KeyRing, Purpose, keyed_hash, sha256_hex},
    db::Database,
    entities::{
        audit_anchors,
        audit_records::{self, Column, Entity},
    },
};

/// The hash the first record (and the first anchor) chains from.
pub const GENESIS: &str = "genesis";
const ADVISORY_LOCK_KEY: i64 = 0x6d63_705f_6175_6469; // "mcp_audi"
/// The Redis key holding the published head in the distributed mode.
pub const REDIS_HEAD_KEY: &str = "mcp:audit:head";
/// The artifact holding the latest signed checkpoint.
pub const CHECKPOINT_ARTIFACT: &str = "audit/checkpoint.json";

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

/// Where the chain's head is published, outside the table.
#[derive(Clone)]
pub enum HeadStore {
    /// Nowhere (an in-memory database, which does not outlive the process either).
    None,
    /// A file beside the SQLite database, replaced whole.
    File(PathBuf),
    /// A Redis key shared by every replica.
    Redis(redis::aio::ConnectionManager),
}

impl std::fmt::Debug for HeadStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Redis(_) => f.write_str("Redis"),
        }
    }
}

/// A signed statement that the chain reached record `id`, whose hash is `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    pub id: i64,
    pub hash: String,
    pub key_id: String,
    pub mac: String,
}

/// What appending to, verifying and publishing the chain needs: the key ring (the chain's keys
/// are derived from it, so they rotate with it), where the head is published, and the artifact
/// store that keeps checkpoints. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Chain {
    ring: Arc<KeyRing>,
    head: HeadStore,
    checkpoints: Option<Arc<dyn ArtifactStore>>,
}

impl Chain {
    pub fn new(
        ring: Arc<KeyRing>,
        head: HeadStore,
        checkpoints: Option<Arc<dyn ArtifactStore>>,
    ) -> Self {
        Self {
            ring,
            head,
            checkpoints,
        }
    }

    /// The chain of a service configured by `settings`: the head in Redis when there is one,
    /// else beside the SQLite database file.
    pub fn from_settings(
        settings: &crate::Settings,
        ring: Arc<KeyRing>,
        redis: Option<redis::aio::ConnectionManager>,
        checkpoints: Option<Arc<dyn ArtifactStore>>,
    ) -> Self {
        let head = match (redis, settings.audit_head_path()) {
            (Some(conn), _) => HeadStore::Redis(conn),
            (None, Some(path)) => HeadStore::File(path),
            (None, None) => HeadStore::None,
        };
        Self::new(ring, head, checkpoints)
    }

    fn mac(&self, what: &str, data: &str) -> (String, String) {
        let (id, key) = self.ring.active_subkey(Purpose::AuditChain);
        (
            id.to_string(),
            keyed_hash(&key, format!("{what}\n{data}").as_bytes()),
        )
    }

    /// Whether `mac` is the MAC of `data` under the ring's key `key_id`: a key the ring no
    /// longer holds proves nothing.
    fn mac_ok(&self, what: &str, data: &str, key_id: Option<&str>, mac: Option<&str>) -> bool {
        let (Some(key_id), Some(mac)) = (key_id, mac) else {
            return false;
        };
        let Some(key) = self.ring.subkey(key_id, Purpose::AuditChain) else {
            return false;
        };
        let expected = keyed_hash(&key, format!("{what}\n{data}").as_bytes());
        constant_time_eq(expected.as_bytes(), mac.as_bytes())
    }

    fn sign_head(&self, id: i64, hash: &str) -> SignedHead {
        let (key_id, mac) = self.mac("audit-head", &format!("{id}\n{hash}"));
        SignedHead {
            id,
            hash: hash.to_string(),
            key_id,
            mac,
        }
    }

    fn head_ok(&self, h: &SignedHead) -> bool {
        self.mac_ok(
            "audit-head",
            &format!("{}\n{}", h.id, h.hash),
            Some(&h.key_id),
            Some(&h.mac),
        )
    }

    /// The head published outside the table, if any.
    pub async fn published_head(&self) -> Result<Option<SignedHead>> {
        let text = match &self.head {
            HeadStore::None => return Ok(None),
            HeadStore::File(path) => match tokio::fs::read_to_string(path).await {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            },
            HeadStore::Redis(conn) => {
                let mut conn = conn.clone();
                let v: Option<String> = redis::cmd("GET")
                    .arg(REDIS_HEAD_KEY)
                    .query_async(&mut conn)
                    .await?;
                match v {
                    Some(t) => t,
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(parse_head(&text)?))
    }

    /// Publishes `id`/`hash` as the head, unless a later head is already published (another
    /// process appended meanwhile): the published head only moves forward. Publishing the same
    /// head again re-signs it (under the active key, after a rotation).
    async fn publish(&self, id: i64, hash: &str) -> Result<()> {
        let head = self.sign_head(id, hash);
        let text = serde_json::to_string(&head)?;
        match &self.head {
            HeadStore::None => Ok(()),
            HeadStore::File(path) => {
                if let Ok(Some(current)) = self.published_head().await
                    && current.id > id
                {
                    return Ok(());
                }
                let mut tmp = path.as_os_str().to_owned();
                tmp.push(format!(".{}.partial", uuid::Uuid::new_v4().simple()));
                let tmp = PathBuf::from(tmp);
                tokio::fs::write(&tmp, format!("{text}\n")).await?;
                tokio::fs::rename(&tmp, path).await?;
                Ok(())
            }
            HeadStore::Redis(conn) => {
                let mut conn = conn.clone();
                let _: i64 = redis::Script::new(
                    r#"local cur = redis.call('GET', KEYS[1])
                    if cur then
                      local ok, h = pcall(cjson.decode, cur)
                      if ok and tonumber(h['id']) and tonumber(h['id']) > tonumber(ARGV[1]) then return 0 end
                    end
                    redis.call('SET', KEYS[1], ARGV[2])
                    return 1"#,
                )
                .key(REDIS_HEAD_KEY)
                .arg(id)
                .arg(&text)
                .invoke_async(&mut conn)
                .await?;
                Ok(())
            }
        }
    }

    /// The latest checkpoint in the artifact store, if any.
    pub async fn checkpoint(&self) -> Result<Option<SignedHead>> {
        let Some(store) = &self.checkpoints else {
            return Ok(None);
        };
        match store.get(CHECKPOINT_ARTIFACT).await {
            Ok(bytes) => Ok(Some(parse_head(&String::from_utf8_lossy(&bytes))?)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the newest committed record as a signed checkpoint to the artifact store (a
    /// second place an attacker with the database alone cannot reach). Returns the id written.
    pub async fn write_checkpoint(&self, conn: &impl ConnectionTrait) -> Result<Option<i64>> {
        let Some(store) = &self.checkpoints else {
            return Ok(None);
        };
        let Some(last) = Entity::find()
            .order_by_desc(Column::Id)
            .limit(1)
            .one(conn)
            .await?
        else {
            return Ok(None);
        };
        if let Ok(Some(current)) = self.checkpoint().await
            && current.id >= last.id
            && current.key_id == self.ring.active_key_id()
        {
            return Ok(Some(current.id));
        }
        let head = self.sign_head(last.id, &last.hash);
        let text = serde_json::to_vec(&head)?;
        store.put(CHECKPOINT_ARTIFACT, text).await?;
        Ok(Some(last.id))
    }
}

fn parse_head(text: &str) -> Result<SignedHead> {
    serde_json::from_str(text.trim())
        .map_err(|e| Error::Crypto(format!("the published audit head is malformed: {e}")))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

/// The chained hash of a retention anchor.
pub fn anchor_hash(prev_hash: &str, a: &audit_anchors::Model) -> String {
    let canonical = json!([
        prev_hash,
        a.purged_through_id,
        a.anchor_hash,
        a.records_purged,
        a.purged_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    ]);
    sha256_hex(canonical.to_string().as_bytes())
}

fn entry_of(row: &audit_records::Model) -> AuditEntry {
    AuditEntry {
        actor: row.actor.clone(),
        action: row.action.clone(),
        target: row.target.clone(),
        outcome: row.outcome.clone(),
        request_id: row.request_id.clone(),
        details: row.details.clone(),
    }
}

/// A write transaction that holds the chain: on PostgreSQL an advisory lock every replica
/// takes; on SQLite the database's write lock, taken at `BEGIN` (`IMMEDIATE`), so another
/// process (`mcp-api keys rotate` while the server runs) cannot read the same head and fork
/// the chain. A deferred transaction would also fail to upgrade from read to write while
/// another connection writes.
async fn chain_txn(db: &Database) -> Result<sea_orm::DatabaseTransaction> {
    if db.conn.get_database_backend() == DatabaseBackend::Postgres {
        let txn = db.conn.begin().await?;
        txn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})"
        ))
        .await?;
        Ok(txn)
    } else {
        Ok(db
            .conn
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await?)
    }
}

/// Appends entries in order, chained and keyed, in one transaction: the group commit behind
/// the API's audit writer, so a burst of requests costs one lock and one round trip, not one
/// each. Once committed, the new head is published (a failure to publish is logged: the
/// records are kept).
pub async fn append(db: &Database, chain: &Chain, entries: Vec<AuditEntry>) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let _guard = APPEND_LOCK.lock().await;
    let txn = chain_txn(db).await?;
    insert_chained(&txn, chain, entries).await?;
    let head = Entity::find()
        .order_by_desc(Column::Id)
        .limit(1)
        .one(&txn)
        .await?;
    txn.commit().await?;
    if let Some(head) = head
        && let Err(e) = chain.publish(head.id, &head.hash).await
    {
        tracing::error!(error = %e, "audit head not published");
    }
    Ok(())
}

/// The hash the next record chains from: the newest record's, else the newest anchor's
/// `anchor_hash`, else [`GENESIS`].
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

async fn insert_chained(
    conn: &impl ConnectionTrait,
    chain: &Chain,
    entries: Vec<AuditEntry>,
) -> Result<()> {
    let mut prev_hash = head_hash(conn).await?;
    let occurred_at = Utc::now().trunc_subsecs(6);
    let mut rows = Vec::with_capacity(entries.len());
    for entry in entries {
        let hash = record_hash(&prev_hash, occurred_at, &entry);
        let (key_id, mac) = chain.mac("audit-record", &hash);
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
            key_id: Set(Some(key_id)),
            mac: Set(Some(mac)),
            ..Default::default()
        });
    }
    // Bounded statements: PostgreSQL allows 65,535 bind parameters, and a record takes 11.
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
    /// The first record whose hash, link or MAC does not match: edited, forged, or the one
    /// after a deletion; after a truncation, the published head's id.
    pub first_broken_id: Option<i64>,
    /// What is wrong, in words, when the chain is not valid.
    pub problem: Option<String>,
}

impl Verification {
    fn broken(checked: u64, id: Option<i64>, problem: String) -> Self {
        Self {
            valid: false,
            records_checked: checked,
            first_broken_id: id,
            problem: Some(problem),
        }
    }
}

/// Walks the whole trail: the anchors' chain (each anchor linked to the one before and carrying
/// a valid MAC), then every record (its hash recomputed, its link to the one before, its MAC),
/// the first chaining from the latest anchor (or genesis) and coming after the purged ids; and
/// finally the published head and the latest checkpoint must still be in the chain, so records
/// deleted from its end show. A purge committed during the walk moves the anchor: the walk then
/// starts again rather than report a break that is not there.
pub async fn verify(conn: &impl ConnectionTrait, chain: &Chain) -> Result<Verification> {
    let mut attempts = 0;
    loop {
        let anchor = latest_anchor(conn).await?.map(|a| a.id);
        let v = verify_once(conn, chain).await?;
        attempts += 1;
        if v.valid || attempts == 3 || latest_anchor(conn).await?.map(|a| a.id) == anchor {
            return Ok(v);
        }
    }
}

/// Walks the anchors' chain; the latest anchor when it holds, or what is wrong.
async fn verify_anchors(
    conn: &impl ConnectionTrait,
    chain: &Chain,
) -> Result<std::result::Result<Option<audit_anchors::Model>, String>> {
    let anchors = audit_anchors::Entity::find()
        .order_by_asc(audit_anchors::Column::Id)
        .all(conn)
        .await?;
    let mut expected_prev = GENESIS.to_string();
    let mut through = 0;
    for a in &anchors {
        let hash = anchor_hash(&expected_prev, a);
        let linked = a.prev_hash.as_deref() == Some(expected_prev.as_str())
            && a.hash.as_deref() == Some(hash.as_str());
        if !linked
            || !chain.mac_ok("audit-anchor", &hash, a.key_id.as_deref(), a.mac.as_deref())
            || a.purged_through_id < through
        {
            return Ok(Err(format!(
                "retention anchor {} is forged or was edited",
                a.id
            )));
        }
        through = a.purged_through_id;
        expected_prev = hash;
    }
    Ok(Ok(anchors.into_iter().last()))
}

async fn verify_once(conn: &impl ConnectionTrait, chain: &Chain) -> Result<Verification> {
    const PAGE: u64 = 2_000;
    // Read before the walk: a head published meanwhile is of records the walk may not reach.
    let mut heads = Vec::new();
    for (name, head) in [
        ("published head", chain.published_head().await),
        ("checkpoint", chain.checkpoint().await),
    ] {
        match head {
            Ok(Some(h)) if chain.head_ok(&h) => heads.push((name, h)),
            Ok(Some(h)) => {
                return Ok(Verification::broken(
                    0,
                    Some(h.id),
                    format!("the audit {name} is not signed by a configured key"),
                ));
            }
            Ok(None) => {}
            Err(e) => {
                return Ok(Verification::broken(
                    0,
                    None,
                    format!("the audit {name} cannot be read: {e}"),
                ));
            }
        }
    }
    let anchor = match verify_anchors(conn, chain).await? {
        Ok(a) => a,
        Err(problem) => return Ok(Verification::broken(0, None, problem)),
    };
    let mut expected_prev = anchor
        .as_ref()
        .map(|a| a.anchor_hash.clone())
        .unwrap_or_else(|| GENESIS.to_string());
    let purged_through = anchor.as_ref().map(|a| a.purged_through_id).unwrap_or(0);
    let mut after = purged_through;
    // A row at or below the anchor point survived a purge it should not have: someone wrote it.
    if let Some(row) = Entity::find()
        .filter(Column::Id.lte(purged_through))
        .order_by_asc(Column::Id)
        .one(conn)
        .await?
    {
        return Ok(Verification::broken(
            0,
            Some(row.id),
            format!("record {} lies before the retention anchor", row.id),
        ));
    }
    // The heads already purged prove nothing more; the others must be found in the walk.
    heads.retain(|(_, h)| h.id > purged_through);
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
            let recomputed = record_hash(&row.prev_hash, row.occurred_at, &entry_of(row));
            let problem = if row.prev_hash != expected_prev {
                Some("does not link to the record before it (one was deleted or inserted)")
            } else if row.hash != recomputed {
                Some("was edited")
            } else if !chain.mac_ok(
                "audit-record",
                &row.hash,
                row.key_id.as_deref(),
                row.mac.as_deref(),
            ) {
                Some("carries no valid MAC (forged, or re-chained without the key)")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Ok(Verification::broken(
                    checked,
                    Some(row.id),
                    format!("record {} {problem}", row.id),
                ));
            }
            if let Some((name, _)) = heads
                .iter()
                .find(|(_, h)| h.id == row.id && h.hash != row.hash)
            {
                return Ok(Verification::broken(
                    checked,
                    Some(row.id),
                    format!("record {} is not the one the audit {name} names", row.id),
                ));
            }
            heads.retain(|(_, h)| h.id != row.id);
            expected_prev = row.hash.clone();
        }
        if (page.len() as u64) < PAGE {
            break;
        }
    }
    if let Some((name, h)) = heads.first() {
        return Ok(Verification::broken(
            checked,
            Some(h.id),
            format!(
                "the trail was truncated: the audit {name} names record {}, which is gone",
                h.id
            ),
        ));
    }
    Ok(Verification {
        valid: true,
        records_checked: checked,
        first_broken_id: None,
        problem: None,
    })
}

/// Retention: deletes the records that occurred before `cutoff` and anchors the chain at the
/// purge point with a keyed anchor linked to the previous one, so [`verify`] still proves the
/// rest. The only way the application removes audit records. Returns how many were purged.
pub async fn purge_before(db: &Database, chain: &Chain, cutoff: DateTime<Utc>) -> Result<u64> {
    let _guard = APPEND_LOCK.lock().await;
    let txn = chain_txn(db).await?;
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
    let prev_hash = latest_anchor(&txn)
        .await?
        .and_then(|a| a.hash)
        .unwrap_or_else(|| GENESIS.to_string());
    let mut anchor = audit_anchors::Model {
        id: 0,
        purged_through_id: last.id,
        anchor_hash: last.hash,
        records_purged: purged as i64,
        purged_at: Utc::now().trunc_subsecs(6),
        prev_hash: None,
        hash: None,
        key_id: None,
        mac: None,
    };
    let hash = anchor_hash(&prev_hash, &anchor);
    let (key_id, mac) = chain.mac("audit-anchor", &hash);
    anchor.prev_hash = Some(prev_hash);
    anchor.hash = Some(hash);
    anchor.key_id = Some(key_id);
    anchor.mac = Some(mac);
    audit_anchors::ActiveModel {
        purged_through_id: Set(anchor.purged_through_id),
        anchor_hash: Set(anchor.anchor_hash),
        records_purged: Set(anchor.records_purged),
        purged_at: Set(anchor.purged_at),
        prev_hash: Set(anchor.prev_hash),
        hash: Set(anchor.hash),
        key_id: Set(anchor.key_id),
        mac: Set(anchor.mac),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(purged)
}

/// Keys what was written before the chain was keyed (only while nothing keyed exists yet):
/// once the unkeyed chain (links and hashes) verifies, gives every record and anchor without a MAC its MAC under the active key, links the
/// anchors, and publishes the head. Returns how many rows it keyed; a broken unkeyed chain is
/// left as it is (verification reports it).
pub async fn key_unkeyed(db: &Database, chain: &Chain) -> Result<u64> {
    let unkeyed_records = Entity::find()
        .filter(Column::Mac.is_null())
        .limit(1)
        .one(&db.conn)
        .await?
        .is_some();
    let unkeyed_anchors = audit_anchors::Entity::find()
        .filter(audit_anchors::Column::Mac.is_null())
        .limit(1)
        .one(&db.conn)
        .await?
        .is_some();
    if !unkeyed_records && !unkeyed_anchors {
        return Ok(0);
    }
    // Unkeyed rows predate the keyed chain only while nothing keyed exists: once a record or an
    // anchor carries a MAC, or a head was published, a row without one was written by someone
    // without the key, and keying it would launder it.
    let keyed_exists = Entity::find()
        .filter(Column::Mac.is_not_null())
        .limit(1)
        .one(&db.conn)
        .await?
        .is_some()
        || audit_anchors::Entity::find()
            .filter(audit_anchors::Column::Mac.is_not_null())
            .limit(1)
            .one(&db.conn)
            .await?
            .is_some()
        || matches!(chain.published_head().await, Ok(Some(_)) | Err(_));
    if keyed_exists {
        tracing::error!(
            "audit rows without a MAC were written after the chain was keyed; they stay unkeyed \
             and verification reports them"
        );
        return Ok(0);
    }
    let _guard = APPEND_LOCK.lock().await;
    let txn = chain_txn(db).await?;
    let mut keyed = 0u64;
    // Anchors, oldest first, linked as they are read.
    let mut prev = GENESIS.to_string();
    let mut through = 0;
    for a in audit_anchors::Entity::find()
        .order_by_asc(audit_anchors::Column::Id)
        .all(&txn)
        .await?
    {
        let hash = anchor_hash(&prev, &a);
        if a.mac.is_none() {
            let (key_id, mac) = chain.mac("audit-anchor", &hash);
            audit_anchors::ActiveModel {
                id: sea_orm::ActiveValue::Unchanged(a.id),
                prev_hash: Set(Some(prev.clone())),
                hash: Set(Some(hash.clone())),
                key_id: Set(Some(key_id)),
                mac: Set(Some(mac)),
                ..Default::default()
            }
            .update(&txn)
            .await?;
            keyed += 1;
        }
        through = a.purged_through_id;
        prev = hash;
    }
    let mut expected_prev = latest_anchor(&txn)
        .await?
        .map(|a| a.anchor_hash)
        .unwrap_or_else(|| GENESIS.to_string());
    let mut after = through;
    let mut head = None;
    loop {
        let page = Entity::find()
            .filter(Column::Id.gt(after))
            .order_by_asc(Column::Id)
            .limit(2_000)
            .all(&txn)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for row in page {
            let recomputed = record_hash(&row.prev_hash, row.occurred_at, &entry_of(&row));
            if row.prev_hash != expected_prev || row.hash != recomputed {
                tracing::error!(
                    record = row.id,
                    "the audit chain written before it was keyed is broken; it stays unkeyed"
                );
                txn.rollback().await?;
                return Ok(0);
            }
            if row.mac.is_none() {
                let (key_id, mac) = chain.mac("audit-record", &row.hash);
                Entity::update_many()
                    .col_expr(Column::KeyId, sea_orm::sea_query::Expr::value(key_id))
                    .col_expr(Column::Mac, sea_orm::sea_query::Expr::value(mac))
                    .filter(Column::Id.eq(row.id))
                    .exec(&txn)
                    .await?;
                keyed += 1;
            }
            expected_prev = row.hash.clone();
            head = Some((row.id, row.hash));
        }
    }
    txn.commit().await?;
    if let Some((id, hash)) = head {
        chain.publish(id, &hash).await?;
    }
    Ok(keyed)
}

/// How many records and anchors each key authenticates (`keys status`).
pub async fn mac_counts(conn: &impl ConnectionTrait) -> Result<Vec<(String, i64)>> {
    use sea_orm::{FromQueryResult, Statement};
    #[derive(FromQueryResult)]
    struct Row {
        key_id: Option<String>,
        n: i64,
    }
    let backend = conn.get_database_backend();
    let rows = Row::find_by_statement(Statement::from_string(
        backend,
        "SELECT key_id, COUNT(*) AS n FROM (SELECT key_id FROM audit_records \
         UNION ALL SELECT key_id FROM audit_anchors) k GROUP BY key_id ORDER BY key_id",
    ))
    .all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.key_id.unwrap_or_else(|| "unkeyed".into()), r.n))
        .collect())
}

/// Key rotation: re-authenticates under the active key every record and anchor an older key
/// authenticated, in batches, each MAC checked under its old key first (a forged MAC is never
/// laundered: it stays, and verification reports it). Returns (re-keyed, refused).
pub async fn rekey(db: &Database, chain: &Chain, batch: u64) -> Result<(u64, u64)> {
    let (active, _) = chain.ring.active_subkey(Purpose::AuditChain);
    let active = active.to_string();
    let (mut done, mut refused) = (0u64, 0u64);
    let mut after = 0;
    loop {
        let rows = Entity::find()
            .filter(Column::Id.gt(after))
            .filter(Column::KeyId.ne(active.as_str()))
            .filter(Column::Mac.is_not_null())
            .order_by_asc(Column::Id)
            .limit(batch)
            .all(&db.conn)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in rows {
            if !chain.mac_ok(
                "audit-record",
                &row.hash,
                row.key_id.as_deref(),
                row.mac.as_deref(),
            ) {
                refused += 1;
                continue;
            }
            let (key_id, mac) = chain.mac("audit-record", &row.hash);
            let n = Entity::update_many()
                .col_expr(Column::KeyId, sea_orm::sea_query::Expr::value(key_id))
                .col_expr(Column::Mac, sea_orm::sea_query::Expr::value(mac))
                .filter(Column::Id.eq(row.id))
                .filter(Column::Mac.eq(row.mac.clone()))
                .exec(&db.conn)
                .await?
                .rows_affected;
            done += n;
        }
    }
    for a in audit_anchors::Entity::find()
        .filter(audit_anchors::Column::KeyId.ne(active.as_str()))
        .filter(audit_anchors::Column::Mac.is_not_null())
        .all(&db.conn)
        .await?
    {
        let Some(hash) = a.hash.clone() else { continue };
        if !chain.mac_ok("audit-anchor", &hash, a.key_id.as_deref(), a.mac.as_deref()) {
            refused += 1;
            continue;
        }
        let (key_id, mac) = chain.mac("audit-anchor", &hash);
        done += audit_anchors::Entity::update_many()
            .col_expr(
                audit_anchors::Column::KeyId,
                sea_orm::sea_query::Expr::value(key_id),
            )
            .col_expr(
                audit_anchors::Column::Mac,
                sea_orm::sea_query::Expr::value(mac),
            )
            .filter(audit_anchors::Column::Id.eq(a.id))
            .filter(audit_anchors::Column::Mac.eq(a.mac.clone()))
            .exec(&db.conn)
            .await?
            .rows_affected;
    }
    // The published head and the checkpoint are signed anew too, so the old key can go.
    if let Ok(Some(h)) = chain.published_head().await
        && chain.head_ok(&h)
        && h.key_id != active
    {
        chain.publish(h.id, &h.hash).await?;
    }
    chain.write_checkpoint(&db.conn).await?;
    Ok((done, refused))
}
