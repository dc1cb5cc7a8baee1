//! Group commit of task starts and completions across the jobs running in one worker process.
//!
//! Every running job needs a conditional `start` before its handler and a conditional `complete`
//! after it; one statement each per job made the database the bottleneck of the whole engine.
//! Here each job hands its update to one writer and awaits its own answer, while the writer
//! drains everything queued meanwhile and applies it as one statement per batch (like the audit
//! log's group-committing writer). The guarantees are those of the single-row updates: the same
//! conditions, applied per row, and a task delivered twice in one batch starts once.

use std::{collections::HashMap, sync::Arc};

use crate::{
    Error, Result,
    db::tasks::transitions::{self as tasks, Completion, Holder},
    entities::tasks::Model,
};
use sea_orm::{DatabaseConnection, DbErr};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

/// Most updates applied in one statement: bounds statement size (SQLite allows 32,766
/// parameters) while staying far above the concurrency of one process.
const MAX_BATCH: usize = 512;

/// Batches being written at once. One at a time makes every update wait for the batch ahead
/// of it to finish; a few overlap the database round trips while keeping batches large. Two
/// batches naming the same task are safe: each row's update is conditional and row-locked.
const IN_FLIGHT: usize = 4;

enum Op {
    Start {
        id: Uuid,
        agent: Option<Uuid>,
        reply: oneshot::Sender<Result<Option<Model>>>,
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
    /// `None` when the database cannot return updated rows: each update then goes alone.
    tx: Option<mpsc::UnboundedSender<Op>>,
}

impl Commits {
    /// Starts the writer (it ends when the last handle is dropped).
    pub fn spawn(db: DatabaseConnection) -> Self {
        if !tasks::batches(&db) {
            return Self { db, tx: None };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write(db.clone(), rx));
        Self { db, tx: Some(tx) }
    }

    /// [`tasks::start`], batched with the other jobs starting now.
    pub async fn start(&self, id: Uuid, agent: Option<Uuid>) -> Result<Option<Model>> {
        let Some(tx) = &self.tx else {
            return tasks::start(&self.db, id, agent).await;
        };
        let (reply, answer) = oneshot::channel();
        if tx.send(Op::Start { id, agent, reply }).is_err() {
            return tasks::start(&self.db, id, agent).await;
        }
        answer.await.unwrap_or_else(|_| Err(gone()))
    }

    /// [`tasks::complete`], batched with the other jobs finishing now.
    pub async fn complete(&self, id: Uuid, holder: Holder, result: Value) -> Result<bool> {
        let Some(tx) = &self.tx else {
            return tasks::complete(&self.db, id, holder, result).await;
        };
        let (reply, answer) = oneshot::channel();
        let completion = Completion { id, holder, result };
        if let Err(mpsc::error::SendError(op)) = tx.send(Op::Complete { completion, reply }) {
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

async fn write(db: DatabaseConnection, mut rx: mpsc::UnboundedReceiver<Op>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut ops = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut ops, MAX_BATCH).await > 0 {
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
        let mut starts = Vec::new();
        let mut completes = Vec::new();
        for op in ops.drain(..) {
            match op {
                Op::Start { id, agent, reply } => starts.push((id, agent, reply)),
                Op::Complete { completion, reply } => completes.push((completion, reply)),
            }
        }
        let db = db.clone();
        tokio::spawn(async move {
            // Two independent statements on two pooled connections.
            tokio::join!(start_batch(&db, starts), complete_batch(&db, completes));
            drop(permit);
        });
    }
}

type StartReply = oneshot::Sender<Result<Option<Model>>>;

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
        let commits = Commits::spawn(db.conn.clone());
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
