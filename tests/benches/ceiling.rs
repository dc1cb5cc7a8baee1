//! The ceiling of the fixed stack, each part alone, on a throwaway redis-server (append-only,
//! `appendfsync always`, as the black-box tests and the engine benchmark run it) and PostgreSQL
//! (`fsync` on, as the engine benchmark runs it):
//! - apalis-redis 1.0 alone: no-op jobs pushed the way the dispatcher pushes them (chunks of
//!   500, at most 2,000 waiting) and drained by one process with the worker pool's configuration
//!   (no task locking, 32 jobs per fetch, 64 concurrent), with no SQL at all;
//! - PostgreSQL alone: the conditional start and completion of every task row, one row per
//!   statement from 64 concurrent callers, versus the batched statements (`start_many`,
//!   `complete_many`), called directly and through the worker's group commit.
//!
//! Run: `cargo bench -p mcp-tests --bench ceiling` (`MCP_BENCH_JOBS` changes the size).

#![allow(dead_code)]

#[path = "../helpers/servers.rs"]
mod servers;
#[path = "../helpers/wait.rs"]
mod wait;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use apalis::prelude::*;
use futures::StreamExt;
use mcp_migrations::{Migrator, MigratorTrait};
use mcp_shared::lifecycle::commit::Commits;
use mcp_shared::{
    db::{
        Database,
        tasks::{
            self,
            transitions::{self, Completion, Holder},
        },
    },
    domain::task::Priority,
    queue::{Job, JobQueue, JobRef, QueueName, RedisQueue},
};
use sea_orm::Set;
use serde_json::json;
use tokio::sync::Notify;
use uuid::Uuid;

const CONCURRENCY: usize = 64;
const PUSH_CHUNK: usize = 500;
const QUEUE_CAP: usize = 2000;

struct Drained {
    done: AtomicUsize,
    target: usize,
    progress: Notify,
    finished: Notify,
}

async fn noop(_job: JobRef, drained: Data<Arc<Drained>>) -> Result<(), BoxDynError> {
    if drained.done.fetch_add(1, Ordering::Relaxed) + 1 == drained.target {
        drained.finished.notify_one();
    }
    drained.progress.notify_one();
    Ok(())
}

/// Jobs/s through apalis-redis alone: push `n` no-op jobs and drain them in this process.
async fn apalis_alone(redis_url: &str, n: usize) -> f64 {
    let conn = mcp_shared::queue::connect_redis(redis_url).await.unwrap();
    let queue = RedisQueue::new(conn);
    let name = QueueName::new("ceiling", Priority::Low);
    let drained = Arc::new(Drained {
        done: AtomicUsize::new(0),
        target: n,
        progress: Notify::new(),
        finished: Notify::new(),
    });
    // The pool's wake-ups: one per push (pub/sub there, a local channel here) plus the 200 ms
    // fallback interval.
    let (wake_tx, wake_rx) = tokio::sync::broadcast::channel::<()>(1024);
    let wakes = tokio_stream_from(wake_rx);
    let interval = futures::stream::unfold(
        tokio::time::interval(Duration::from_millis(200)),
        |mut i| async move {
            i.tick().await;
            Some(((), i))
        },
    );
    let ticks = futures::stream::select(wakes, interval).boxed();
    let config = apalis_redis::Config::default()
        .queue(name.to_string())
        .heartbeat_interval(Duration::from_secs(5))
        .missed_heartbeats(3)
        .lock_tasks(false)
        .batch_size(32);
    let backend = queue
        .storage(&name)
        .with_config(config)
        .poll_with_stream(ticks);
    let stop = Arc::new(Notify::new());
    let worker = {
        let stop = stop.clone();
        WorkerBuilder::new(format!("ceiling-{}", Uuid::new_v4().simple()))
            .backend(backend)
            .concurrency(CONCURRENCY)
            .data(drained.clone())
            .build(noop)
            .run_until(async move {
                stop.notified().await;
                Ok::<(), std::io::Error>(())
            })
    };
    let worker = tokio::spawn(worker);

    let started = Instant::now();
    let finished = drained.finished.notified();
    tokio::pin!(finished);
    let mut pushed = 0;
    while pushed < n {
        let waiting = pushed - drained.done.load(Ordering::Relaxed);
        if waiting + PUSH_CHUNK > QUEUE_CAP {
            let progress = drained.progress.notified();
            // Re-check after registering, so a job finishing in between is not missed.
            if pushed - drained.done.load(Ordering::Relaxed) + PUSH_CHUNK > QUEUE_CAP {
                progress.await;
            }
            continue;
        }
        let size = PUSH_CHUNK.min(n - pushed);
        let jobs = (0..size).map(|_| Job::now(Uuid::now_v7())).collect();
        queue.push(&name, jobs).await.unwrap();
        pushed += size;
        let _ = wake_tx.send(());
    }
    tokio::time::timeout(Duration::from_secs(600), &mut finished)
        .await
        .expect("the queue drained within 10 minutes");
    let rate = n as f64 / started.elapsed().as_secs_f64();
    stop.notify_one();
    let _ = worker.await;
    rate
}

fn tokio_stream_from(
    rx: tokio::sync::broadcast::Receiver<()>,
) -> impl futures::Stream<Item = ()> + Send {
    // A lagged receiver still means "look": only a closed channel ends the stream.
    futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
            Ok(()) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some(((), rx)),
        }
    })
}

/// `n` pending no-op task rows, as a batch submit stores them.
async fn seed(db: &Database, n: usize) -> Vec<Uuid> {
    let now = chrono::Utc::now();
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let rows = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut row = tasks::new_row(*id, now);
            row.task_type = Set("generic".into());
            row.priority = Set("low".into());
            row.queue = Set("mcp:generic:low".into());
            row.required_capabilities = Set(json!([]));
            row.payload = Set(json!({"i": i}));
            row.max_attempts = Set(3);
            row.timeout_seconds = Set(300);
            row.enqueued_at = Set(Some(now));
            row
        })
        .collect();
    tasks::insert_many(&db.conn, rows).await.unwrap();
    ids
}

/// Runs `job` for every id from `callers` concurrent callers; returns ids/s.
async fn concurrently<F, Fut>(ids: Vec<Uuid>, callers: usize, job: F) -> f64
where
    F: Fn(Uuid) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let n = ids.len();
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..callers {
        let (ids, next, job) = (ids.clone(), next.clone(), job.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                job(*id).await;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn holder(agent: Uuid) -> Holder {
    Holder {
        agent: Some(agent),
        attempt: Some(1),
    }
}

async fn sql_alone(pg_url: &str, n: usize) -> [(&'static str, f64); 3] {
    let db = Database::connect(pg_url).await.unwrap();
    Migrator::up(&db.conn, None).await.unwrap();
    let agent = Uuid::new_v4();

    let ids = seed(&db, n).await;
    let conn = db.conn.clone();
    let one_by_one = concurrently(ids, CONCURRENCY, move |id| {
        let conn = conn.clone();
        async move {
            let started = transitions::start(&conn, id, Some(agent)).await.unwrap();
            assert!(started.is_some(), "a fresh task starts");
            let done = transitions::complete(&conn, id, holder(agent), json!({"echo": true}))
                .await
                .unwrap();
            assert!(done, "a started task completes");
        }
    })
    .await;

    let ids = seed(&db, n).await;
    let started = Instant::now();
    for chunk in ids.chunks(CONCURRENCY) {
        let rows = transitions::start_many(&db.conn, chunk, Some(agent))
            .await
            .unwrap();
        assert_eq!(rows.len(), chunk.len(), "every fresh task starts");
        let items: Vec<Completion> = chunk
            .iter()
            .map(|id| Completion {
                id: *id,
                holder: holder(agent),
                result: json!({"echo": true}),
            })
            .collect();
        let done = transitions::complete_many(&db.conn, &items).await.unwrap();
        assert_eq!(done.len(), chunk.len(), "every started task completes");
    }
    let batched = n as f64 / started.elapsed().as_secs_f64();

    let ids = seed(&db, n).await;
    let commits = Commits::spawn(&db);
    let grouped = concurrently(ids, CONCURRENCY, move |id| {
        let commits = commits.clone();
        async move {
            let started = commits.start(id, Some(agent)).await.unwrap();
            assert!(started.is_some(), "a fresh task starts");
            let done = commits
                .complete(id, holder(agent), json!({"echo": true}))
                .await
                .unwrap();
            assert!(done, "a started task completes");
        }
    })
    .await;
    [
        ("one row per statement, 64 concurrent callers", one_by_one),
        ("batches of 64, one caller", batched),
        ("group commit, 64 concurrent callers", grouped),
    ]
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("MCP_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let redis = servers::Redis::start();
    let pg = servers::Postgres::start(true);
    println!("ceiling of the fixed stack, release build, {n} no-op jobs or task rows");
    for round in 1..=2 {
        let rate = apalis_alone(&redis.url(), n).await;
        println!(
            "  apalis-redis alone (round {round}), 1 process, 64 concurrent: {rate:>8.0} jobs/s"
        );
    }
    let url = pg.create_database();
    for (name, rate) in sql_alone(&url, n).await {
        println!("  PostgreSQL start + complete, {name:<45} {rate:>8.0} tasks/s");
    }
}
