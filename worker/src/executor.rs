//! One delivered job, start to finish: the worker's side of the task lifecycle. Delivery is at
//! least once; effects are exactly once, because every transition goes through
//! [`mcp_shared::lifecycle`], whose conditional updates apply each change once.

use futures::FutureExt;
use mcp_shared::{
    db::tasks::{self, transitions::Holder},
    domain::task::TaskType,
    entities::tasks::Model as Task,
    lifecycle::Delivery,
    otlp,
    queue::JobRef,
    sealing,
};
use serde_json::json;
use tracing::{Instrument, info_span};

use crate::{WorkerDeps, handlers};

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
pub async fn execute(deps: &WorkerDeps, job: JobRef) -> Outcome {
    let span = info_span!("job", task_id = %job.task_id);
    run(deps, job).instrument(span).await
}

async fn run(deps: &WorkerDeps, job: JobRef) -> Outcome {
    let delivery = match deps.lifecycle.deliver(job.task_id, deps.agent_id).await {
        Ok(Some(delivery)) => delivery,
        Ok(None) => {
            tracing::debug!("task not startable; duplicate delivery dropped");
            return Outcome::Done;
        }
        Err(e) => return Outcome::Redeliver(format!("taking delivery: {e}")),
    };
    let task = &delivery.task;
    // With trace export on, the job is a span in the trace of the request that created the task.
    let parent = task
        .traceparent
        .as_deref()
        .filter(|_| otlp::enabled())
        .and_then(otlp::TraceContext::parse);
    let Some(parent) = parent else {
        return run_delivered(deps, delivery).await;
    };
    let context = parent.child();
    let start = std::time::SystemTime::now();
    let (id, task_type, queue, attempt) = (
        task.id,
        task.task_type.clone(),
        task.queue.clone(),
        task.attempt,
    );
    let outcome = otlp::scope(context, run_delivered(deps, delivery)).await;
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

/// Runs a delivered task's handler and records the outcome. The start is committed while the
/// handler runs (or with its completion); a start that turns out impossible (the task was
/// cancelled or taken elsewhere meanwhile) stops the handler.
async fn run_delivered(deps: &WorkerDeps, mut delivery: Delivery) -> Outcome {
    let task = delivery.task.clone();
    let timeout = std::time::Duration::from_secs(task.timeout_seconds.max(1) as u64);
    let task_type = TaskType::parse(&task.task_type).unwrap_or(TaskType::Generic);
    let holder = holder(deps, &task);
    // The handler sees sensitive fields in clear; the stored row keeps them sealed.
    let opened = match open_sealed(deps, &task) {
        Ok(t) => t,
        // Retryable: during a key rotation another worker may already hold the key.
        Err(e) => return record_failure(deps, &mut delivery, &e, true).await,
    };
    let runnable = opened.as_ref().unwrap_or(&task);
    // A panicking handler is a failed attempt like any other, not a dead worker.
    let guarded =
        std::panic::AssertUnwindSafe(handlers::run(deps, task_type, runnable)).catch_unwind();
    let handler = tokio::time::timeout(timeout, guarded);
    tokio::pin!(handler);
    let result = loop {
        tokio::select! {
            r = &mut handler => {
                break r.map(|r| r.unwrap_or_else(|_| Err("handler panicked".into())));
            }
            started = deps.lifecycle.await_start(&mut delivery), if delivery.start_pending() => {
                match started {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!("task no longer startable; its run is abandoned");
                        return Outcome::Done;
                    }
                    Err(e) => return Outcome::Redeliver(format!("starting task: {e}")),
                }
            }
            () = cancel_requested(deps, task.id), if delivery.is_started() => {
                return match persist(|| deps.lifecycle.finish_cancel(&task, holder)).await {
                    Ok(_) => Outcome::Done,
                    Err(e) => Outcome::Redeliver(format!("recording cancellation: {e}")),
                };
            }
        }
    };
    match result {
        Ok(Ok(mut result)) => {
            if let Some(opened) = &opened {
                // A handler that echoes its input must not store a sensitive value in clear.
                sealing::keep_sealed(&mut result, &task.payload, &opened.payload);
            }
            let mut tries = Retry::new();
            loop {
                match deps
                    .lifecycle
                    .complete_delivery(&mut delivery, holder, result.clone())
                    .await
                {
                    Ok(_) => return Outcome::Done,
                    Err(e) => {
                        if !tries.again(&e).await {
                            return Outcome::Redeliver(format!("recording completion: {e}"));
                        }
                    }
                }
            }
        }
        Ok(Err(failure)) => {
            let retryable = !failure.is::<handlers::failure::Permanent>();
            record_failure(deps, &mut delivery, &failure.to_string(), retryable).await
        }
        Err(_) => {
            let error = format!("timed out after {}s", timeout.as_secs());
            record_failure(deps, &mut delivery, &error, true).await
        }
    }
}

/// The task with its sealed payload fields opened, for the handler; `None` when it has none
/// (the common case, which then costs no copy).
fn open_sealed(deps: &WorkerDeps, task: &Task) -> Result<Option<Task>, String> {
    if task.sealed_key.is_none() {
        return Ok(None);
    }
    let mut opened = task.clone();
    sealing::open(&mut opened.payload, &deps.cipher)
        .map_err(|e| format!("sensitive fields could not be opened: {e}"))?;
    Ok(Some(opened))
}

/// Records a failed attempt, once its start is committed; the lifecycle decides between retry
/// and dead.
async fn record_failure(
    deps: &WorkerDeps,
    delivery: &mut Delivery,
    error: &str,
    retryable: bool,
) -> Outcome {
    match deps.lifecycle.ensure_started(delivery).await {
        Ok(true) => {}
        Ok(false) => return Outcome::Done,
        Err(e) => return Outcome::Redeliver(format!("starting task: {e}")),
    }
    let task = &delivery.task;
    let holder = holder(deps, task);
    match persist(|| deps.lifecycle.fail(task, holder, error, retryable)).await {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::Redeliver(format!("recording failure: {e}")),
    }
}

/// This attempt, as held by this worker: only it may finish the attempt.
fn holder(deps: &WorkerDeps, task: &Task) -> Holder {
    Holder {
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
    let mut tries = Retry::new();
    loop {
        match write().await {
            Ok(v) => return Ok(v),
            Err(e) if tries.again(&e).await => {}
            Err(e) => return Err(e),
        }
    }
}

/// The retries of [`persist`]: a few, with a doubling wait, for transient database errors.
struct Retry {
    delay: std::time::Duration,
    left: u32,
}

impl Retry {
    fn new() -> Self {
        Self {
            delay: std::time::Duration::from_millis(100),
            left: 6,
        }
    }

    /// Whether to try again after `error` (waiting first), or give up.
    async fn again(&mut self, error: &mcp_shared::Error) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        tracing::warn!(error = %error, "recording the outcome failed; retrying");
        tokio::time::sleep(self.delay).await;
        self.delay *= 2;
        true
    }
}

/// How often a running task checks whether it was cancelled.
const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Completes when the task's row asks for cancellation.
async fn cancel_requested(deps: &WorkerDeps, id: uuid::Uuid) {
    loop {
        tokio::time::sleep(CANCEL_POLL).await;
        if let Ok(Some(t)) = tasks::find(deps.lifecycle.db(), id).await
            && t.cancel_requested
        {
            return;
        }
    }
}
