//! One delivered job, start to finish. Delivery is at least once; effects are exactly once,
//! because every state change is a conditional update on the task row.

use chrono::Utc;
use futures::FutureExt;
use mcp_shared::{
    bus::emit,
    db::tasks,
    domain::{
        event::{Event, EventType},
        task::{TaskStatus, TaskType},
    },
    otlp,
    queue::JobRef,
    sealing,
};
use serde_json::json;
use tracing::{Instrument, info_span};

use crate::{WorkerDeps, commit::Commits, handlers};

/// What the queue should do with the job after [`execute`].
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The job is finished with (including duplicates and tasks no longer runnable).
    Done,
    /// Infrastructure failed before the outcome was recorded: deliver the job again.
    Redeliver(String),
}

/// Runs one delivered job; its start and completion are committed together with those of the
/// other jobs running in this process.
pub async fn execute(deps: &WorkerDeps, commits: &Commits, job: JobRef) -> Outcome {
    let span = info_span!("job", task_id = %job.task_id);
    run(deps, commits, job).instrument(span).await
}

async fn run(deps: &WorkerDeps, commits: &Commits, job: JobRef) -> Outcome {
    let task = match commits.start(job.task_id, deps.agent_id).await {
        Ok(Some(task)) => task,
        Ok(None) => {
            tracing::debug!("task not startable; duplicate delivery dropped");
            return Outcome::Done;
        }
        Err(e) => return Outcome::Redeliver(format!("starting task: {e}")),
    };
    // With trace export on, the job is a span in the trace of the request that created the task.
    let parent = task
        .traceparent
        .as_deref()
        .filter(|_| otlp::enabled())
        .and_then(otlp::TraceContext::parse);
    let Some(parent) = parent else {
        return run_started(deps, commits, task).await;
    };
    let context = parent.child();
    let start = std::time::SystemTime::now();
    let (id, task_type, queue, attempt) = (
        task.id,
        task.task_type.clone(),
        task.queue.clone(),
        task.attempt,
    );
    let outcome = otlp::scope(context, run_started(deps, commits, task)).await;
    otlp::export(otlp::Span {
        context,
        parent: Some(parent.span_id),
        name: format!("job {task_type}"),
        kind: otlp::CONSUMER,
        start,
        end: std::time::SystemTime::now(),
        attributes: vec![
            ("mcp.task.id", json!(id.to_string())),
            ("mcp.task.type", json!(task_type)),
            ("messaging.destination.name", json!(queue)),
            ("mcp.task.attempt", json!(attempt)),
        ],
        error: outcome != Outcome::Done,
    });
    outcome
}

/// Runs a started task's handler and records the outcome.
async fn run_started(
    deps: &WorkerDeps,
    commits: &Commits,
    task: mcp_shared::entities::tasks::Model,
) -> Outcome {
    emit(
        deps.bus.as_ref(),
        task_event(
            &task,
            EventType::TaskStarted,
            json!({"task_id": task.id, "status": "running", "attempt": task.attempt,
                   "agent_id": task.agent_id, "execution_id": task.execution_id, "stage": task.stage}),
        ),
    )
    .await;

    let timeout = std::time::Duration::from_secs(task.timeout_seconds.max(1) as u64);
    let task_type = TaskType::parse(&task.task_type).unwrap_or(TaskType::Generic);
    // The handler sees sensitive fields in clear; the stored row keeps them sealed.
    let opened = match open_sealed(deps, &task) {
        Ok(t) => t,
        // Retryable: during a key rotation another worker may already hold the key.
        Err(e) => return record_failure(deps, &task, &e, true).await,
    };
    let runnable = opened.as_ref().unwrap_or(&task);
    // A panicking handler is a failed attempt like any other, not a dead worker.
    let guarded =
        std::panic::AssertUnwindSafe(handlers::run(deps, task_type, runnable)).catch_unwind();
    let result = tokio::select! {
        r = tokio::time::timeout(timeout, guarded) => {
            r.map(|r| r.unwrap_or_else(|_| Err("handler panicked".into())))
        }
        () = cancel_requested(deps, task.id) => return record_cancel(deps, &task).await,
    };

    let (status, event) = match result {
        Ok(Ok(mut result)) => {
            if let Some(opened) = &opened {
                // A handler that echoes its input must not store a sensitive value in clear.
                sealing::keep_sealed(&mut result, &task.payload, &opened.payload);
            }
            let holder = holder(deps, &task);
            let completed = persist(|| commits.complete(task.id, holder, result.clone())).await;
            match completed {
                Ok(true) => (
                    TaskStatus::Completed,
                    task_event(
                        &task,
                        EventType::TaskCompleted,
                        json!({"task_id": task.id, "status": "completed", "result": if task.sealed_key.is_some() { sealing::masked(result) } else { result }, "progress": 100,
                               "type": task.task_type, "duration_ms": run_ms(&task)}),
                    ),
                ),
                Ok(false) => return Outcome::Done,
                Err(e) => return Outcome::Redeliver(format!("recording completion: {e}")),
            }
        }
        Ok(Err(failure)) => {
            let retryable = !failure.is::<handlers::Permanent>();
            return record_failure(deps, &task, &failure.to_string(), retryable).await;
        }
        Err(_) => {
            return record_failure(
                deps,
                &task,
                &format!("timed out after {}s", timeout.as_secs()),
                true,
            )
            .await;
        }
    };
    tracing::info!(status = %status, "task finished");
    emit(deps.bus.as_ref(), event).await;
    Outcome::Done
}

/// The task with its sealed payload fields opened, for the handler; `None` when it has none
/// (the common case, which then costs no copy).
fn open_sealed(
    deps: &WorkerDeps,
    task: &mcp_shared::entities::tasks::Model,
) -> Result<Option<mcp_shared::entities::tasks::Model>, String> {
    if task.sealed_key.is_none() {
        return Ok(None);
    }
    let mut opened = task.clone();
    sealing::open(&mut opened.payload, &deps.cipher)
        .map_err(|e| format!("sensitive fields could not be opened: {e}"))?;
    Ok(Some(opened))
}

/// How long the attempt ran, for the task-duration metric.
fn run_ms(task: &mcp_shared::entities::tasks::Model) -> i64 {
    task.started_at
        .map_or(0, |at| (Utc::now() - at).num_milliseconds().max(0))
}

/// Records a failed attempt: `dead` when attempts are exhausted, otherwise `failed` and due again
/// after an exponential backoff with jitter.
async fn record_failure(
    deps: &WorkerDeps,
    task: &mcp_shared::entities::tasks::Model,
    error: &str,
    retryable: bool,
) -> Outcome {
    let exhausted = !retryable || task.attempt >= task.max_attempts;
    let (status, kind, retry_at) = if exhausted {
        (TaskStatus::Dead, EventType::TaskDead, None)
    } else {
        let delay = backoff(task.attempt as u32);
        (
            TaskStatus::Failed,
            EventType::TaskFailed,
            Some(Utc::now() + delay),
        )
    };
    let holder = holder(deps, task);
    let failed =
        persist(|| tasks::fail(&deps.db.conn, task.id, holder, error, status, retry_at)).await;
    match failed {
        Ok(true) => {}
        Ok(false) => return Outcome::Done,
        Err(e) => return Outcome::Redeliver(format!("recording failure: {e}")),
    }
    // A cancel requested meanwhile turned the failure into a cancellation.
    if let Ok(Some(now)) = tasks::find(&deps.db.conn, task.id).await
        && now.status == TaskStatus::Cancelled.as_str()
    {
        emit(
            deps.bus.as_ref(),
            task_event(
                task,
                EventType::TaskCancelled,
                json!({"task_id": task.id, "status": "cancelled"}),
            ),
        )
        .await;
        return Outcome::Done;
    }
    if status == TaskStatus::Dead {
        crate::pipeline::shard_dead(deps, task, error).await;
    }
    // The dispatcher pushes the task again when `retry_at` comes.
    tracing::warn!(status = %status, error, "task attempt failed");
    emit(
        deps.bus.as_ref(),
        task_event(
            task,
            kind,
            json!({"task_id": task.id, "status": status, "error": error, "attempt": task.attempt}),
        ),
    )
    .await;
    Outcome::Done
}

/// An event about `task`, routed by task, execution and agent so subscribers can filter on each.
fn task_event(
    task: &mcp_shared::entities::tasks::Model,
    kind: EventType,
    data: serde_json::Value,
) -> Event {
    Event::new(kind, data)
        .for_task(task.id)
        .for_execution(task.execution_id)
        .for_agent(task.agent_id)
}

/// This attempt, as held by this worker: only it may finish the attempt.
fn holder(deps: &WorkerDeps, task: &mcp_shared::entities::tasks::Model) -> tasks::Holder {
    tasks::Holder {
        agent: deps.agent_id,
        attempt: Some(task.attempt),
    }
}

/// Records an attempt's outcome, retrying transient database errors in process: once the
/// attempt has started, a redelivered job cannot record it (the task is running under a live
/// lease), so giving up here would leave the task running until the lease expires.
async fn persist<T, F, Fut>(mut write: F) -> mcp_shared::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = mcp_shared::Result<T>>,
{
    let mut delay = std::time::Duration::from_millis(100);
    for _ in 0..6 {
        match write().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::warn!(error = %e, "recording the outcome failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    write().await
}

/// How often a running task checks whether it was cancelled.
const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Completes when the task's row asks for cancellation.
async fn cancel_requested(deps: &WorkerDeps, id: uuid::Uuid) {
    loop {
        tokio::time::sleep(CANCEL_POLL).await;
        if let Ok(Some(t)) = tasks::find(&deps.db.conn, id).await
            && t.cancel_requested
        {
            return;
        }
    }
}

async fn record_cancel(deps: &WorkerDeps, task: &mcp_shared::entities::tasks::Model) -> Outcome {
    match tasks::finish_cancel(&deps.db.conn, task.id, holder(deps, task)).await {
        Ok(true) => {
            tracing::info!("task cancelled while running");
            emit(
                deps.bus.as_ref(),
                task_event(
                    task,
                    EventType::TaskCancelled,
                    json!({"task_id": task.id, "status": "cancelled"}),
                ),
            )
            .await;
            Outcome::Done
        }
        Ok(false) => Outcome::Done,
        Err(e) => Outcome::Redeliver(format!("recording cancellation: {e}")),
    }
}

/// Exponential backoff with full jitter: up to 2^attempt seconds, capped at 10 minutes.
pub fn backoff(attempt: u32) -> chrono::Duration {
    let cap_ms = 1000u64.saturating_mul(1 << attempt.min(20)).min(600_000);
    let jittered = cap_ms / 2 + rand::random::<u64>() % (cap_ms / 2 + 1);
    chrono::Duration::milliseconds(jittered as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..30 {
            let d = backoff(attempt).num_milliseconds();
            let cap = (1000u64 << attempt.min(20)).min(600_000) as i64;
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d}ms");
        }
    }
}
