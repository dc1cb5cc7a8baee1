//! The task lifecycle, stepped one delivery at a time through the real executor against an
//! in-memory SQLite: no processes and no timing, so each case is exact.

use chrono::Utc;
use mcp_migrations::{Migrator, MigratorTrait};
use mcp_shared::{
    db::{
        Database,
        tasks::transitions::{self, Holder, Lost},
    },
    entities::{pipeline_executions, tasks},
    lifecycle::Cancel,
};
use mcp_worker::{executor::Outcome, step::Stepper};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::json;
use uuid::Uuid;

struct Case {
    stepper: Stepper,
    _artifacts: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn case() -> Case {
    let db = Database::connect("sqlite::memory:").await.unwrap();
    Migrator::up(&db.conn, None).await.unwrap();
    let dir = std::env::temp_dir().join(format!("mcp-step-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let stepper = Stepper::new(db, |_| None, &dir).unwrap();
    Case {
        stepper,
        _artifacts: TempDir(dir),
    }
}

/// Makes a waiting retry due now, as if its backoff had passed.
async fn make_due(s: &Stepper, id: Uuid) {
    tasks::Entity::update_many()
        .col_expr(tasks::Column::RunAt, Expr::value(Some(Utc::now())))
        .filter(tasks::Column::Id.eq(id))
        .exec(&s.deps.db.conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_delivery_runs_the_task_to_completion() {
    let mut c = case().await;
    let s = &mut c.stepper;
    let id = s.submit(json!({"n": 1}), 3).await.unwrap();
    assert_eq!(s.step().await, Some(Outcome::Done));
    let t = s.task(id).await;
    assert_eq!((t.status.as_str(), t.attempt), ("completed", 1));
    assert_eq!(t.result, Some(json!({"n": 1})));
    assert_eq!(t.agent_id, s.deps.agent_id);
    assert!(t.lease_expires_at.is_none());
    assert_eq!(s.events(), ["task.started", "task.completed"]);
    assert_eq!(s.step().await, None, "nothing else waits");
}

#[tokio::test]
async fn a_duplicate_delivery_has_one_effect() {
    let mut c = case().await;
    let s = &mut c.stepper;
    let id = s.submit(json!({}), 3).await.unwrap();
    s.deliver(id).await.unwrap();
    assert_eq!(s.step().await, Some(Outcome::Done));
    assert_eq!(
        s.step().await,
        Some(Outcome::Done),
        "the duplicate is dropped"
    );
    let t = s.task(id).await;
    assert_eq!((t.status.as_str(), t.attempt), ("completed", 1));
    assert_eq!(s.events(), ["task.started", "task.completed"]);
}

#[tokio::test]
async fn a_failing_task_is_retried_after_a_backoff_then_dead() {
    let mut c = case().await;
    let s = &mut c.stepper;
    let id = s.submit(json!({"fail": true}), 2).await.unwrap();
    assert_eq!(s.step().await, Some(Outcome::Done));
    let t = s.task(id).await;
    assert_eq!((t.status.as_str(), t.attempt), ("failed", 1));
    let retry_in = t.run_at.expect("a retry time") - Utc::now();
    assert!(
        retry_in > chrono::Duration::zero() && retry_in <= chrono::Duration::seconds(2),
        "backoff after the first attempt is 0.5-1 s: {retry_in}"
    );
    assert_eq!(s.events(), ["task.started", "task.failed"]);

    // Delivered before it is due: not started, nothing counted.
    s.deliver(id).await.unwrap();
    assert_eq!(s.step().await, Some(Outcome::Done));
    assert_eq!(s.task(id).await.attempt, 1);
    assert!(s.events().is_empty());

    make_due(s, id).await;
    s.deliver(id).await.unwrap();
    assert_eq!(s.step().await, Some(Outcome::Done));
    let t = s.task(id).await;
    assert_eq!((t.status.as_str(), t.attempt), ("dead", 2));
    assert!(t.finished_at.is_some() && t.run_at.is_none());
    assert_eq!(s.events(), ["task.started", "task.dead"]);
}

#[tokio::test]
async fn a_cancel_that_races_a_failure_wins() {
    let mut c = case().await;
    let s = &mut c.stepper;
    let lifecycle = s.deps.lifecycle.clone();
    let id = s.submit(json!({}), 3).await.unwrap();
    let job = s.task(id).await;
    let started = lifecycle
        .start(job.id, s.deps.agent_id)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        lifecycle.cancel(id).await.unwrap(),
        Cancel::Requested(_)
    ));
    let holder = Holder {
        agent: s.deps.agent_id,
        attempt: Some(started.attempt),
    };
    let to = lifecycle
        .fail(&started, holder, "boom", true)
        .await
        .unwrap();
    assert_eq!(to.map(|t| t.as_str()), Some("cancelled"));
    assert_eq!(s.task(id).await.status, "cancelled");
    assert_eq!(s.events(), ["task.started", "task.cancelled"]);
    // Its stale job changes nothing.
    assert_eq!(s.step().await, Some(Outcome::Done));
    assert_eq!(s.task(id).await.status, "cancelled");
}

#[tokio::test]
async fn a_running_handler_stops_when_cancelled() {
    let mut c = case().await;
    let s = &mut c.stepper;
    let id = s.submit(json!({"sleep_ms": 60_000}), 3).await.unwrap();
    let lifecycle = s.deps.lifecycle.clone();
    let db = s.deps.db.conn.clone();
    let canceller = tokio::spawn(async move {
        // Once it runs, ask it to stop.
        loop {
            let t = mcp_shared::db::tasks::find(&db, id).await.unwrap().unwrap();
            if t.status == "running" {
                break;
            }
            tokio::task::yield_now().await;
        }
        lifecycle.cancel(id).await.unwrap()
    });
    let stepped = tokio::time::timeout(std::time::Duration::from_secs(10), s.step())
        .await
        .expect("the handler stopped at its next cancel check, not after 60 s");
    assert_eq!(stepped, Some(Outcome::Done));
    assert!(matches!(canceller.await.unwrap(), Cancel::Requested(_)));
    let t = s.task(id).await;
    assert_eq!((t.status.as_str(), t.attempt), ("cancelled", 1));
    assert_eq!(s.events(), ["task.started", "task.cancelled"]);
}

#[tokio::test]
async fn a_lost_lease_counts_the_attempt_and_the_old_holder_cannot_finish() {
    let mut c = case().await;
    let s = &mut c.stepper;
    let lifecycle = s.deps.lifecycle.clone();
    let id = s.submit(json!({"n": 2}), 2).await.unwrap();
    // Another worker took it, then went quiet past its lease.
    let gone = Some(Uuid::now_v7());
    let first = lifecycle.start(id, gone).await.unwrap().unwrap();
    tasks::Entity::update_many()
        .col_expr(
            tasks::Column::LeaseExpiresAt,
            Expr::value(Some(Utc::now() - chrono::Duration::seconds(1))),
        )
        .filter(tasks::Column::Id.eq(id))
        .exec(&s.deps.db.conn)
        .await
        .unwrap();
    assert_eq!(
        lifecycle
            .release_lost(Lost::ExpiredLeases, "attempt lost: its lease expired")
            .await
            .unwrap(),
        1
    );
    let t = s.task(id).await;
    assert_eq!((t.status.as_str(), t.attempt), ("failed", 1));
    assert_eq!(s.events(), ["task.started", "task.failed"]);

    // Its stale job is dropped: not due yet.
    assert_eq!(s.step().await, Some(Outcome::Done));
    make_due(s, id).await;
    s.deliver(id).await.unwrap();
    assert_eq!(s.step().await, Some(Outcome::Done));
    let t = s.task(id).await;
    assert_eq!((t.status.as_str(), t.attempt), ("completed", 2));

    // The first holder wakes up late: its completion changes nothing.
    let late = Holder {
        agent: gone,
        attempt: Some(first.attempt),
    };
    assert!(
        !lifecycle
            .complete(&first, late, json!({"late": true}))
            .await
            .unwrap()
    );
    assert_eq!(s.task(id).await.result, Some(json!({"n": 2})));
}

#[tokio::test]
async fn a_task_whose_attempts_keep_getting_lost_ends_dead() {
    let mut c = case().await;
    let s = &mut c.stepper;
    let lifecycle = s.deps.lifecycle.clone();
    let id = s.submit(json!({}), 2).await.unwrap();
    for attempt in 1..=2 {
        make_due(s, id).await;
        let crashing = Uuid::now_v7();
        let t = lifecycle.start(id, Some(crashing)).await.unwrap().unwrap();
        assert_eq!(t.attempt, attempt);
        // Its worker died: an operator deregisters it.
        assert_eq!(lifecycle.release_agent(crashing).await.unwrap(), 1);
    }
    let t = s.task(id).await;
    assert_eq!((t.status.as_str(), t.attempt), ("dead", 2));
    assert_eq!(
        s.events(),
        ["task.started", "task.failed", "task.started", "task.dead"]
    );
    // A late delivery cannot revive it.
    assert_eq!(s.step().await, Some(Outcome::Done));
    assert_eq!(s.task(id).await.status, "dead");
}

#[tokio::test]
async fn a_dead_pipeline_shard_fails_its_execution() {
    let mut c = case().await;
    let s = &mut c.stepper;
    let db = &s.deps.db.conn;
    let execution = Uuid::now_v7();
    let now = Utc::now();
    mcp_shared::db::pipelines::create(
        db,
        pipeline_executions::Model {
            id: execution,
            status: "pending".into(),
            priority: "medium".into(),
            // A dataset that is gone: ingestion cannot run, and no retry can fix it.
            dataset_id: Some(Uuid::now_v7()),
            options: json!({}),
            results: None,
            metrics: None,
            error: None,
            created_by: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
            current_stage: Some("ingestion".into()),
            shards: 1,
            idempotency_key: None,
            request_hash: None,
            purged_at: None,
        },
        60,
    )
    .await
    .unwrap();
    let shard = tasks::Entity::find()
        .filter(tasks::Column::ExecutionId.eq(execution))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    s.deliver(shard.id).await.unwrap();
    assert_eq!(s.step().await, Some(Outcome::Done));
    let t = s.task(shard.id).await;
    assert_eq!((t.status.as_str(), t.attempt), ("dead", 1), "{:?}", t.error);
    let e = mcp_shared::db::pipelines::find(db, execution)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.status, "failed");
    assert!(
        e.error.as_deref().unwrap_or_default().contains("ingestion"),
        "{:?}",
        e.error
    );
    assert_eq!(s.events(), ["task.started", "pipeline.failed", "task.dead"]);
}

#[tokio::test]
async fn an_unstartable_task_is_never_started() {
    let mut c = case().await;
    let s = &mut c.stepper;
    let id = s.submit(json!({}), 3).await.unwrap();
    // Cancelled while waiting: its job finds nothing to start.
    assert!(matches!(
        s.deps.lifecycle.cancel(id).await.unwrap(),
        Cancel::Cancelled(_)
    ));
    assert_eq!(s.step().await, Some(Outcome::Done));
    let t = s.task(id).await;
    assert_eq!((t.status.as_str(), t.attempt), ("cancelled", 0));
    assert_eq!(s.events(), ["task.cancelled"]);
    // Re-driven, it runs again from a fresh budget.
    assert!(s.deps.lifecycle.retry(id).await.unwrap().is_some());
    s.deliver(id).await.unwrap();
    assert_eq!(s.step().await, Some(Outcome::Done));
    let t = s.task(id).await;
    assert_eq!((t.status.as_str(), t.attempt), ("completed", 1));
    assert!(
        !transitions::retry(&s.deps.db.conn, id).await.unwrap(),
        "only dead or cancelled tasks are re-driven"
    );
}

#[tokio::test]
async fn a_longer_task_shows_as_running_before_it_completes() {
    let mut c = case().await;
    let s = &mut c.stepper;
    let id = s.submit(json!({"sleep_ms": 400}), 3).await.unwrap();
    let db = s.deps.db.conn.clone();
    let watcher = tokio::spawn(async move {
        // Its start is committed while the handler still runs.
        loop {
            let t = mcp_shared::db::tasks::find(&db, id).await.unwrap().unwrap();
            if t.status != "pending" {
                return (t.status, t.attempt, t.lease_expires_at.is_some());
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    assert_eq!(s.step().await, Some(Outcome::Done));
    assert_eq!(watcher.await.unwrap(), ("running".to_string(), 1, true));
    let t = s.task(id).await;
    assert_eq!((t.status.as_str(), t.attempt), ("completed", 1));
    assert_eq!(s.events(), ["task.started", "task.completed"]);
}

#[tokio::test]
async fn a_task_cancelled_before_its_start_is_committed_stops() {
    let mut c = case().await;
    let s = &mut c.stepper;
    let id = s.submit(json!({"sleep_ms": 60_000}), 3).await.unwrap();
    let lifecycle = s.deps.lifecycle.clone();
    // Cancelled the moment it was delivered: still `pending` in the database, so at once.
    let canceller = tokio::spawn(async move {
        tokio::task::yield_now().await;
        lifecycle.cancel(id).await.unwrap()
    });
    let stepped = tokio::time::timeout(std::time::Duration::from_secs(10), s.step())
        .await
        .expect("the run is abandoned once its start turns out impossible");
    assert_eq!(stepped, Some(Outcome::Done));
    assert!(matches!(canceller.await.unwrap(), Cancel::Cancelled(_)));
    let t = s.task(id).await;
    assert_eq!((t.status.as_str(), t.attempt), ("cancelled", 0));
}

#[tokio::test]
async fn a_delivery_lost_with_its_process_is_counted_by_the_next_one() {
    let mut c = case().await;
    let s = &mut c.stepper;
    let id = s.submit(json!({}), 2).await.unwrap();
    let dir = c._artifacts.0.join("deliveries");
    // A process took delivery twice and died both times before recording anything.
    for attempt in [0, 1] {
        let log = mcp_shared::lifecycle::deliveries::DeliveryLog::open(&dir).unwrap();
        let logged = log.record(id, attempt).unwrap();
        // The process dies: its file stays, unlocked.
        drop(logged);
        drop(log);
        let counted = s
            .deps
            .lifecycle
            .recover_lost_deliveries(&dir)
            .await
            .unwrap();
        assert_eq!(counted, 1);
    }
    let t = s.task(id).await;
    assert_eq!((t.status.as_str(), t.attempt), ("dead", 2));
    assert_eq!(s.events(), ["task.dead"]);
    // Replayed again, nothing changes: the log is gone, and a stale entry would not match.
    assert_eq!(
        s.deps
            .lifecycle
            .recover_lost_deliveries(&dir)
            .await
            .unwrap(),
        0
    );
}
