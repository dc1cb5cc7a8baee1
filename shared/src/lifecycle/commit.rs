//! Group commit of task starts and completions across the jobs running in one process.
//!
//! Every job needs a conditional start and a conditional completion; one statement each per
//! job made the database the bottleneck of the whole engine. Here each job hands its update to
//! one writer and awaits its own answer, while the writer drains everything queued meanwhile
//! and applies it as one statement per kind per batch. The guarantees are those of the
//! single-row updates: the same conditions, applied per row, and a task delivered twice in one
//! batch starts once.
//!
//! A built-in worker's delivery goes further ([`Commits::defer_start`]): the task is read, run at
//! once, and its start held back for [`LINGER`]. A task that finishes within it is started and
//! completed by one update ([`Commits::finish`]); a longer one has its start committed when the
//! linger ends, so it shows as `running`, with its lease, while it runs. (The delivery itself is
//! counted in the delivery log first, see [`super::deliveries`].)

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use super::deliveries::Logged;
use crate::{
    Error, Result,
    db::tasks::transitions::{self as tasks, Completion, Holder, StartedAndCompleted},
    entities::tasks::Model,
};

/// Most updates applied in one statement: bounds statement size (SQLite allows 32,766
/// parameters) while staying far above the concurrency of one process.
const MAX_BATCH: usize = 512;

/// Batches being written at once. One at a time makes every update wait for the batch ahead
/// of it to finish; a few overlap the database round trips while keeping batches large. Two
/// batches naming the same task are safe: each row's update is conditional and row-locked.
/// SQLite has one connection, which runs one statement at a time anyway: there, one batch in
/// flight lets the next one grow instead of queueing small ones behind it.
fn in_flight(db: &DatabaseConnection) -> usize {
    match db.get_database_backend() {
        sea_orm::DatabaseBackend::Sqlite => 1,
        _ => 4,
    }
}

/// How long a delivered task runs before its start is committed on its own. Shorter tasks are
/// started and completed by one update; anything longer is visibly `running` this soon.
pub const LINGER: Duration = Duration::from_millis(50);

/// What became of a held start.
#[derive(Debug)]
pub enum Fate {
    /// Committed on its own: the task is `running`; the row as it is now.
    Started(Box<Model>),
    /// Not startable any more (cancelled, or started elsewhere meanwhile): stop.
    NotStartable,
    /// Committed together with the completion.
    Fused,
}

/// What [`Commits::finish`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    /// Started and completed in one update.
    Completed,
    /// The task was not startable any more: nothing changed.
    NotStartable,
    /// Its start was no longer held (committed on its own, or being committed): wait for the
    /// start's [`Fate`], then complete it the ordinary way.
    NotHeld,
}

/// A start held back by the writer until its deadline or its completion.
struct Held {
    id: Uuid,
    agent: Option<Uuid>,
    attempt_before: i32,
    since: DateTime<Utc>,
    deadline: tokio::time::Instant,
    fate: oneshot::Sender<Result<Fate>>,
    /// The delivery's entry in the delivery log, let go once the start is settled.
    _logged: Option<Logged>,
}

type StartReply = oneshot::Sender<Result<Option<Model>>>;
type FinishReply = oneshot::Sender<Result<Finished>>;

enum Op {
    Start {
        id: Uuid,
        agent: Option<Uuid>,
        reply: StartReply,
    },
    Hold(Held),
    Flush {
        id: Uuid,
    },
    Finish {
        id: Uuid,
        result: Value,
        reply: FinishReply,
    },
    Complete {
        completion: Completion,
        reply: oneshot::Sender<Result<bool>>,
    },
}

/// Where jobs send their start and completion; cheap to clone.
#[derive(Debug, Clone)]
pub struct Commits {
    db: DatabaseConnection,
    /// Where reads go (on SQLite, beside the one writer).
    reads: DatabaseConnection,
    /// `None` when the database cannot return updated rows: each update then goes alone.
    tx: Option<mpsc::UnboundedSender<Op>>,
    /// Reads, batched by their own loop so they never wait behind a write.
    read_tx: mpsc::UnboundedSender<(Uuid, StartReply)>,
}

impl Commits {
    /// Starts the writer (it ends when the last handle is dropped).
    pub fn spawn(database: &crate::db::Database) -> Self {
        let (db, reads) = (database.conn.clone(), database.reads.clone());
        let (read_tx, read_rx) = mpsc::unbounded_channel();
        tokio::spawn(read(reads.clone(), read_rx));
        if !tasks::batches(&db) {
            return Self {
                db,
                reads,
                tx: None,
                read_tx,
            };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write(db.clone(), rx));
        Self {
            db,
            reads,
            tx: Some(tx),
            read_tx,
        }
    }

    /// Sends `op` to the writer; hands it back when there is none.
    fn send(&self, op: Op) -> std::result::Result<(), Op> {
        match &self.tx {
            Some(tx) => tx.send(op).map_err(|e| e.0),
            None => Err(op),
        }
    }

    /// [`tasks::start`], batched with the other jobs starting now.
    pub async fn start(&self, id: Uuid, agent: Option<Uuid>) -> Result<Option<Model>> {
        let (reply, answer) = oneshot::channel();
        if self.send(Op::Start { id, agent, reply }).is_err() {
            return tasks::start(&self.db, id, agent).await;
        }
        answer.await.unwrap_or_else(|_| Err(gone()))
    }

    /// The task's row, read together with the other jobs delivered now.
    pub async fn read(&self, id: Uuid) -> Result<Option<Model>> {
        let (reply, answer) = oneshot::channel();
        if self.read_tx.send((id, reply)).is_err() {
            return crate::db::tasks::find(&self.reads, id).await;
        }
        answer.await.unwrap_or_else(|_| Err(gone()))
    }

    /// Holds the start of `task` (as read, delivered to `agent` at `since`) for [`LINGER`]:
    /// the returned receiver says what became of it.
    pub fn defer_start(
        &self,
        task: &Model,
        agent: Option<Uuid>,
        since: DateTime<Utc>,
        logged: Option<Logged>,
    ) -> oneshot::Receiver<Result<Fate>> {
        let (fate, outcome) = oneshot::channel();
        let held = Held {
            id: task.id,
            agent,
            attempt_before: task.attempt,
            since,
            deadline: tokio::time::Instant::now() + LINGER,
            fate,
            _logged: logged,
        };
        if let Err(Op::Hold(held)) = self.send(Op::Hold(held)) {
            // No writer: start at once, alone.
            let db = self.db.clone();
            tokio::spawn(async move {
                let fate = tasks::start(&db, held.id, held.agent)
                    .await
                    .map(|row| row.map_or(Fate::NotStartable, |row| Fate::Started(Box::new(row))));
                let _ = held.fate.send(fate);
            });
        }
        outcome
    }

    /// Commits a held start now (its task is failing, or must report progress).
    pub fn flush_start(&self, id: Uuid) {
        let _ = self.send(Op::Flush { id });
    }

    /// Completes a delivery whose start may still be held: both in one update if it is.
    pub async fn finish(&self, id: Uuid, result: Value) -> Result<Finished> {
        let (reply, answer) = oneshot::channel();
        if self.send(Op::Finish { id, result, reply }).is_err() {
            return Ok(Finished::NotHeld);
        }
        answer.await.unwrap_or_else(|_| Err(gone()))
    }

    /// [`tasks::complete`], batched with the other jobs finishing now.
    pub async fn complete(&self, id: Uuid, holder: Holder, result: Value) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        let completion = Completion { id, holder, result };
        if let Err(op) = self.send(Op::Complete { completion, reply }) {
            let Op::Complete { completion, .. } = op else {
                unreachable!("the op sent back is the one sent")
            };
            return tasks::complete(&self.db, id, holder, completion.result).await;
        }
        answer.await.unwrap_or_else(|_| Err(gone()))
    }
}

fn gone() -> Error {
    Error::Database(DbErr::Custom("the task writer stopped".into()))
}

/// A batch failed as a whole: every caller gets the error (they retry or redeliver as before).
fn shared_error(e: &Error) -> Error {
    Error::Database(DbErr::Custom(format!("batched task update failed: {e}")))
}

/// One batch's work, by kind.
#[derive(Default)]
struct Batch {
    starts: Vec<(Uuid, Option<Uuid>, StartReply)>,
    held_starts: Vec<Held>,
    fused: Vec<(Held, Value, FinishReply)>,
    completes: Vec<(Completion, oneshot::Sender<Result<bool>>)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.starts.is_empty()
            && self.held_starts.is_empty()
            && self.fused.is_empty()
            && self.completes.is_empty()
    }

    /// Independent statements on pooled connections.
    async fn run(self, db: DatabaseConnection) {
        tokio::join!(
            start_batch(&db, self.starts),
            held_start_batch(&db, self.held_starts),
            fused_batch(&db, self.fused),
            complete_batch(&db, self.completes),
        );
    }
}

/// Reads in batches: whatever queued while the last batch was out goes in the next, a couple
/// at a time (on SQLite, one per read-only connection).
async fn read(reads: DatabaseConnection, mut rx: mpsc::UnboundedReceiver<(Uuid, StartReply)>) {
    let in_flight = Arc::new(Semaphore::new(2));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let reads = reads.clone();
        let taken = std::mem::take(&mut batch);
        tokio::spawn(async move {
            read_batch(&reads, taken).await;
            drop(permit);
        });
    }
}

async fn write(db: DatabaseConnection, mut rx: mpsc::UnboundedReceiver<Op>) {
    let in_flight = Arc::new(Semaphore::new(in_flight(&db)));
    let mut ops = Vec::with_capacity(MAX_BATCH);
    let mut held: HashMap<Uuid, Held> = HashMap::new();
    let mut closed = false;
    while !closed || !held.is_empty() {
        let next_deadline = held.values().map(|h| h.deadline).min();
        tokio::select! {
            n = rx.recv_many(&mut ops, MAX_BATCH), if !closed => closed = n == 0,
            () = sleep_until(next_deadline), if next_deadline.is_some() => {}
        }
        // Waiting for a free batch slot is what lets the next batch grow meanwhile.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Whatever queued while waiting joins this batch.
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut batch = Batch::default();
        for op in ops.drain(..) {
            match op {
                Op::Start { id, agent, reply } => batch.starts.push((id, agent, reply)),
                Op::Hold(h) => {
                    held.insert(h.id, h);
                }
                Op::Flush { id } => batch.held_starts.extend(held.remove(&id)),
                Op::Finish { id, result, reply } => match held.remove(&id) {
                    Some(h) => batch.fused.push((h, result, reply)),
                    None => {
                        let _ = reply.send(Ok(Finished::NotHeld));
                    }
                },
                Op::Complete { completion, reply } => batch.completes.push((completion, reply)),
            }
        }
        // Starts whose linger ran out go now; all of them when the writer is closing.
        let now = tokio::time::Instant::now();
        let due: Vec<Uuid> = held
            .values()
            .filter(|h| closed || h.deadline <= now)
            .map(|h| h.id)
            .collect();
        batch
            .held_starts
            .extend(due.iter().filter_map(|id| held.remove(id)));
        if batch.is_empty() {
            continue;
        }
        let db = db.clone();
        tokio::spawn(async move {
            batch.run(db).await;
            drop(permit);
        });
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn read_batch(db: &DatabaseConnection, reads: Vec<(Uuid, StartReply)>) {
    if reads.is_empty() {
        return;
    }

    let ids: Vec<Uuid> = reads.iter().map(|(id, _)| *id).collect();
    match tasks::find_many(db, &ids).await {
        Ok(rows) => {
            let rows: HashMap<Uuid, Model> = rows.into_iter().map(|m| (m.id, m)).collect();
            for (id, reply) in reads {
                let _ = reply.send(Ok(rows.get(&id).cloned()));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, tasks = ids.len(), "batched task read failed");
            for (_, reply) in reads {
                let _ = reply.send(Err(shared_error(&e)));
            }
        }
    }
}

async fn start_batch(db: &DatabaseConnection, starts: Vec<(Uuid, Option<Uuid>, StartReply)>) {
    if starts.is_empty() {
        return;
    }
    // One process registers once, so a batch nearly always has one agent.
    let mut by_agent: HashMap<Option<Uuid>, Vec<(Uuid, StartReply)>> = HashMap::new();
    for (id, agent, reply) in starts {
        by_agent.entry(agent).or_default().push((id, reply));
    }
    for (agent, waiting) in by_agent {
        let ids: Vec<Uuid> = waiting.iter().map(|(id, _)| *id).collect();
        match tasks::start_many(db, &ids, agent).await {
            Ok(rows) => {
                let mut started: HashMap<Uuid, Model> =
                    rows.into_iter().map(|m| (m.id, m)).collect();
                // The first delivery of an id takes the start; a duplicate finds it gone.
                for (id, reply) in waiting {
                    let _ = reply.send(Ok(started.remove(&id)));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, tasks = ids.len(), "batched task start failed");
                for (_, reply) in waiting {
                    let _ = reply.send(Err(shared_error(&e)));
                }
            }
        }
    }
}

async fn held_start_batch(db: &DatabaseConnection, held: Vec<Held>) {
    if held.is_empty() {
        return;
    }
    let mut by_agent: HashMap<Option<Uuid>, Vec<Held>> = HashMap::new();
    for h in held {
        by_agent.entry(h.agent).or_default().push(h);
    }
    for (agent, group) in by_agent {
        let ids: Vec<Uuid> = group.iter().map(|h| h.id).collect();
        match tasks::start_many(db, &ids, agent).await {
            Ok(rows) => {
                let mut started: HashMap<Uuid, Model> =
                    rows.into_iter().map(|m| (m.id, m)).collect();
                for h in group {
                    let fate = started
                        .remove(&h.id)
                        .map_or(Fate::NotStartable, |row| Fate::Started(Box::new(row)));
                    let _ = h.fate.send(Ok(fate));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, tasks = ids.len(), "batched task start failed");
                for h in group {
                    let _ = h.fate.send(Err(shared_error(&e)));
                }
            }
        }
    }
}

async fn fused_batch(db: &DatabaseConnection, fused: Vec<(Held, Value, FinishReply)>) {
    if fused.is_empty() {
        return;
    }

    let items: Vec<StartedAndCompleted> = fused
        .iter()
        .map(|(h, result, _)| StartedAndCompleted {
            id: h.id,
            agent: h.agent,
            attempt_before: h.attempt_before,
            started_at: h.since,
            result: result.clone(),
        })
        .collect();
    match tasks::start_and_complete_many(db, &items).await {
        Ok(ids) => {
            let mut done: std::collections::HashSet<Uuid> = ids.into_iter().collect();
            for (h, _, reply) in fused {
                let (fate, finished) = if done.remove(&h.id) {
                    (Fate::Fused, Finished::Completed)
                } else {
                    (Fate::NotStartable, Finished::NotStartable)
                };
                let _ = h.fate.send(Ok(fate));
                let _ = reply.send(Ok(finished));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, tasks = items.len(), "batched task completion failed");
            for (h, _, reply) in fused {
                let _ = h.fate.send(Err(shared_error(&e)));
                let _ = reply.send(Err(shared_error(&e)));
            }
        }
    }
}

async fn complete_batch(
    db: &DatabaseConnection,
    completes: Vec<(Completion, oneshot::Sender<Result<bool>>)>,
) {
    if completes.is_empty() {
        return;
    }
    let (items, replies): (Vec<Completion>, Vec<_>) = completes.into_iter().unzip();
    match tasks::complete_many(db, &items).await {
        Ok(ids) => {
            let mut done: std::collections::HashSet<Uuid> = ids.into_iter().collect();
            // A repeated completion in the same batch changes nothing, like a repeated call.
            for (c, reply) in items.iter().zip(replies) {
                let _ = reply.send(Ok(done.remove(&c.id)));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, tasks = items.len(), "batched task completion failed");
            for reply in replies {
                let _ = reply.send(Err(shared_error(&e)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mcp_migrations::{Migrator, MigratorTrait};

    use crate::db::{Database, tasks::find};
    use sea_orm::{ActiveModelTrait, Set};
    use serde_json::json;

    use super::*;

    async fn database() -> Database {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migrator::up(&db.conn, None).await.unwrap();
        db
    }

    async fn pending(db: &Database, cancel_requested: bool) -> Uuid {
        let id = Uuid::now_v7();
        let mut row = crate::db::tasks::new_row(id, chrono::Utc::now());
        row.task_type = Set("generic".into());
        row.priority = Set("low".into());
        row.queue = Set("mcp:generic:low".into());
        row.required_capabilities = Set(json!([]));
        row.payload = Set(json!({}));
        row.max_attempts = Set(3);
        row.timeout_seconds = Set(60);
        row.cancel_requested = Set(cancel_requested);
        row.insert(&db.conn).await.unwrap();
        id
    }

    #[tokio::test]
    async fn batched_updates_keep_the_single_row_conditions() {
        let db = database().await;
        assert!(tasks::batches(&db.conn), "SQLite returns updated rows");
        let agent = Some(Uuid::new_v4());
        let (a, b, cancelled) = (
            pending(&db, false).await,
            pending(&db, false).await,
            pending(&db, true).await,
        );

        // A task named twice in one batch starts once; a task asked to cancel never starts.
        let started = tasks::start_many(&db.conn, &[a, a, b, cancelled], agent)
            .await
            .unwrap();
        let mut ids: Vec<Uuid> = started.iter().map(|t| t.id).collect();
        ids.sort();
        assert_eq!(ids, {
            let mut v = vec![a, b];
            v.sort();
            v
        });
        assert!(
            started
                .iter()
                .all(|t| t.attempt == 1 && t.status == "running")
        );
        assert!(started.iter().all(|t| t.lease_expires_at.is_some()));
        // Running under a live lease: a second delivery does not start it again.
        assert!(
            tasks::start_many(&db.conn, &[a], agent)
                .await
                .unwrap()
                .is_empty()
        );

        // Each row gets its own result; a completion from the wrong attempt changes nothing.
        let holder = Holder {
            agent,
            attempt: Some(1),
        };
        let stale = Holder {
            agent,
            attempt: Some(2),
        };
        let done = tasks::complete_many(
            &db.conn,
            &[
                Completion {
                    id: a,
                    holder,
                    result: json!({"n": 1}),
                },
                Completion {
                    id: b,
                    holder: stale,
                    result: json!({"n": 2}),
                },
            ],
        )
        .await
        .unwrap();
        assert_eq!(done, vec![a]);
        let done = tasks::complete_many(
            &db.conn,
            &[
                Completion {
                    id: b,
                    holder,
                    result: json!({"n": 2}),
                },
                Completion {
                    id: a,
                    holder,
                    result: json!({"n": 3}),
                },
            ],
        )
        .await
        .unwrap();
        assert_eq!(done, vec![b], "a repeated completion changes nothing");
        let a_row = find(&db.conn, a).await.unwrap().unwrap();
        let b_row = find(&db.conn, b).await.unwrap().unwrap();
        assert_eq!(
            (a_row.status.as_str(), a_row.result),
            ("completed", Some(json!({"n": 1})))
        );
        assert_eq!(
            (b_row.status.as_str(), b_row.result),
            ("completed", Some(json!({"n": 2})))
        );
    }

    #[tokio::test]
    async fn concurrent_callers_each_get_their_own_answer() {
        let db = database().await;
        let commits = Commits::spawn(&db);
        let agent = Some(Uuid::new_v4());
        let mut ids = Vec::new();
        for _ in 0..40 {
            ids.push(pending(&db, false).await);
        }
        // Every id delivered twice at once: exactly one delivery of each starts.
        let starts = ids.iter().chain(ids.iter()).map(|id| {
            let commits = commits.clone();
            let id = *id;
            tokio::spawn(async move { (id, commits.start(id, agent).await.unwrap()) })
        });
        let mut started = HashMap::new();
        for s in starts {
            let (id, row) = s.await.unwrap();
            if row.is_some() {
                *started.entry(id).or_insert(0) += 1;
            }
        }
        assert_eq!(started.len(), ids.len());
        assert!(started.values().all(|n| *n == 1), "{started:?}");

        let holder = Holder {
            agent,
            attempt: Some(1),
        };
        let completes = ids.iter().map(|id| {
            let commits = commits.clone();
            let id = *id;
            tokio::spawn(async move {
                commits
                    .complete(id, holder, json!({"id": id.to_string()}))
                    .await
                    .unwrap()
            })
        });
        for c in completes {
            assert!(c.await.unwrap());
        }
        for id in &ids {
            let row = find(&db.conn, *id).await.unwrap().unwrap();
            assert_eq!(row.result, Some(json!({"id": id.to_string()})));
        }
    }
}
