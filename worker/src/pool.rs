//! The worker pool: one apalis worker per queue this process serves.
//!
//! Idle workers do not spin: a push wakes them (the embedded queue wakes its worker directly;
//! for Redis, pub/sub, with a slow interval covering anything a wake-up missed). A worker whose
//! backend fails (Redis restarting, say) is rebuilt after a short backoff instead of staying dead.

use std::{
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use apalis::prelude::*;
use futures::{Stream, StreamExt};
use mcp_shared::{
    Error, Result,
    queue::{Job, JobRef, MemoryQueue, QueueName, RedisQueue, WAKE_CHANNEL, served_keys},
};
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, IntervalStream};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    WorkerDeps,
    executor::{self, Outcome},
    gate::PriorityGate,
};

/// Jobs fetched per backend round trip: as many as the process can run at once (each fetch is
/// a round trip, and the jobs fetched wait in this process), within these bounds.
fn fetch_batch(slots: usize) -> usize {
    slots.clamp(32, 512)
}

/// How long a job to deliver again waits before it is pushed back onto the embedded queue.
const REDELIVER_DELAY: Duration = Duration::from_millis(500);

/// Where this process pulls jobs from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The single node's embedded queue.
    Memory(MemoryQueue),
    Redis {
        queue: RedisQueue,
        client: redis::Client,
    },
}

/// Runs workers for every tier of every capability until `shutdown` fires.
pub async fn run(
    deps: WorkerDeps,
    source: Source,
    capabilities: Vec<String>,
    shutdown: CancellationToken,
) -> Result<()> {
    let wake = match &source {
        // In-memory backends wake their worker themselves.
        Source::Memory(_) => broadcast::channel(1).1,
        Source::Redis { client, .. } => redis_wakeups(client.clone(), shutdown.clone()),
    };
    // The pool stops on shutdown, or by itself when its agent is deregistered.
    let shutdown = shutdown.child_token();
    let instance = instance_name();
    let mut deps = deps;
    // Attempts that dead processes left unrecorded are counted before any new work is taken.
    deps.lifecycle = deps
        .lifecycle
        .clone()
        .with_delivery_log(&deps.settings.state_dir.join("deliveries"))
        .await?;
    let agent_id = crate::identity::register(&deps, &instance, &capabilities).await?;
    deps.agent_id = Some(agent_id);
    deps.stats.registered.store(true, Ordering::Relaxed);
    let stop_beats = CancellationToken::new();
    let beats = tokio::spawn(crate::identity::heartbeat_until(
        deps.clone(),
        agent_id,
        stop_beats.clone(),
        shutdown.clone(),
    ));
    let deps = Arc::new(deps);
    let tracker = TaskTracker::new();
    let gate = PriorityGate::new(
        deps.settings.worker_concurrency,
        deps.settings.starvation_after,
    );
    let mut handles = Vec::new();
    // Each capability alone, and every combination of them (tasks needing several), except
    // that a typed task type's own capability is served alone: a typed task needing more than
    // its type's capability is for an agent, never for the built-in handler.
    let (typed, combinable): (Vec<String>, Vec<String>) = capabilities
        .iter()
        .cloned()
        .partition(|c| crate::TYPED_CAPABILITIES.contains(&c.as_str()));
    for key in served_keys(&combinable).into_iter().chain(typed) {
        for queue in QueueName::tiers(&key) {
            let worker = QueueWorker {
                name: format!("{instance}:{queue}"),
                queue,
                source: source.clone(),
                deps: deps.clone(),
                tracker: tracker.clone(),
                gate: gate.clone(),
                wake: wake.resubscribe(),
                shutdown: shutdown.clone(),
            };
            handles.push(tokio::spawn(worker.supervise()));
        }
    }
    tracing::info!(%instance, %agent_id, capabilities = ?capabilities, "workers started");
    for h in handles {
        let _ = h.await;
    }
    // Let in-flight attempts finish and record their outcome before the process goes.
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(30), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight tasks still running at shutdown; they will be released as lost");
    }
    // Only now stop beating and deregister: until here the in-flight work was alive.
    deps.stats.registered.store(false, Ordering::Relaxed);
    stop_beats.cancel();
    let _ = beats.await;
    Ok(())
}

/// A name unique to this process: apalis refuses to register a live worker name twice.
fn instance_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{host}-{}-{suffix}", std::process::id())
}

struct QueueWorker {
    name: String,
    queue: QueueName,
    source: Source,
    deps: Arc<WorkerDeps>,
    tracker: TaskTracker,
    gate: PriorityGate,
    wake: broadcast::Receiver<String>,
    shutdown: CancellationToken,
}

impl QueueWorker {
    async fn supervise(self) {
        let mut backoff = Duration::from_millis(200);
        let mut generation = 0u32;
        while !self.shutdown.is_cancelled() {
            generation += 1;
            let name = format!("{}#{generation}", self.name);
            let result = self.run_generation(&name).await;
            if self.shutdown.is_cancelled() {
                break;
            }
            match result {
                Ok(()) => tracing::warn!(queue = %self.queue, "worker stopped; restarting"),
                Err(e) => {
                    tracing::warn!(queue = %self.queue, error = %e, "worker failed; restarting")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.cancelled() => break,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn run_generation(&self, name: &str) -> Result<()> {
        let settings = &self.deps.settings;
        let ticks = self.ticks();
        let stop = {
            let token = self.shutdown.clone();
            async move {
                token.cancelled().await;
                Ok::<(), std::io::Error>(())
            }
        };
        let concurrency = settings.worker_concurrency.max(1);
        match &self.source {
            Source::Memory(q) => WorkerBuilder::new(name)
                .backend(q.backend(&self.queue))
                .concurrency(concurrency)
                .data(self.deps.clone())
                .data(self.tracker.clone())
                .data(self.gate.clone())
                .data(self.queue.clone())
                .data(PushBack(true))
                .build(handle)
                .run_until(stop)
                .await
                .map_err(Error::queue),
            Source::Redis { queue, .. } => {
                // Locking costs a scan of the whole active list per job; our conditional start
                // already makes a duplicate delivery harmless, so it buys nothing here.
                let config = apalis_redis::Config::default()
                    .queue(self.queue.to_string())
                    .heartbeat_interval(settings.worker_heartbeat)
                    .missed_heartbeats(settings.worker_missed_heartbeats)
                    .lock_tasks(false)
                    .batch_size(fetch_batch(concurrency));
                let backend = queue
                    .storage(&self.queue)
                    .with_config(config)
                    .poll_with_stream(ticks);
                WorkerBuilder::new(name)
                    .backend(backend)
                    .concurrency(concurrency)
                    .data(self.deps.clone())
                    .data(self.tracker.clone())
                    .data(self.gate.clone())
                    .data(self.queue.clone())
                    .data(PushBack(false))
                    .build(handle)
                    .run_until(stop)
                    .await
                    .map_err(Error::queue)
            }
        }
    }

    /// Wake-ups for this queue merged with the fallback interval.
    fn ticks(&self) -> Pin<Box<dyn Stream<Item = ()> + Send>> {
        let mine = self.queue.to_string();
        let wakes = BroadcastStream::new(self.wake.resubscribe()).filter_map(move |msg| {
            let hit = match msg {
                Ok(name) => name == mine,
                // Lagged: we may have missed our own wake-up, so look.
                Err(_) => true,
            };
            futures::future::ready(hit.then_some(()))
        });
        let mut interval = tokio::time::interval(self.deps.settings.queue_poll_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let interval = IntervalStream::new(interval).map(|_| ());
        Box::pin(futures::stream::select(wakes, interval))
    }
}

/// Whether a job to deliver again must be pushed back by us (the embedded queue forgets a job
/// once taken) or is rescheduled by the backend when the handler fails (apalis-redis).
#[derive(Debug, Clone, Copy)]
struct PushBack(bool);

impl PushBack {
    fn pushes(self) -> bool {
        self.0
    }
}

/// The apalis handler: runs the job and maps the outcome to ack or redeliver.
///
/// The execution runs on its own tracked task: if the apalis worker is torn down mid-job (its
/// backend failed, say), the attempt still finishes and records its outcome instead of being
/// dropped half way and left `running`.
async fn handle(
    job: JobRef,
    deps: Data<Arc<WorkerDeps>>,
    tracker: Data<TaskTracker>,
    gate: Data<PriorityGate>,
    queue: Data<QueueName>,
    push_back: Data<PushBack>,
) -> std::result::Result<(), BoxDynError> {
    let slot = gate.acquire(queue.tier).await;
    let deps = (*deps).clone();
    let backend = deps.queue.clone();
    let stats = deps.stats.clone();
    let outcome = tracker.spawn(async move {
        deps.stats.running.fetch_add(1, Ordering::Relaxed);
        let outcome = executor::execute(&deps, job).await;
        deps.stats.running.fetch_sub(1, Ordering::Relaxed);
        drop(slot);
        outcome
    });
    let outcome = outcome.await;
    let counter = match &outcome {
        Ok(Outcome::Done) => &stats.done,
        _ => &stats.redelivered,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    match outcome {
        Ok(Outcome::Done) => Ok(()),
        Ok(Outcome::Redeliver(reason)) if push_back.pushes() => {
            tracing::warn!(task_id = %job.task_id, reason, "job to be delivered again");
            tokio::time::sleep(REDELIVER_DELAY).await;
            backend
                .push(&queue, vec![Job::now(job.task_id)])
                .await
                .map_err(Into::into)
        }
        Ok(Outcome::Redeliver(reason)) => Err(reason.into()),
        Err(e) => Err(format!("execution task failed: {e}").into()),
    }
}

/// Subscribes to the Redis wake channel and re-broadcasts queue names locally; reconnects forever.
fn redis_wakeups(
    client: redis::Client,
    shutdown: CancellationToken,
) -> broadcast::Receiver<String> {
    let (tx, rx) = broadcast::channel(1024);
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            let mut pubsub = match client.get_async_pubsub().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "wake-up channel unavailable; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if pubsub.subscribe(WAKE_CHANNEL).await.is_err() {
                continue;
            }
            let mut messages = pubsub.on_message();
            loop {
                tokio::select! {
                    msg = messages.next() => match msg {
                        Some(msg) => {
                            if let Ok(name) = msg.get_payload::<String>() {
                                let _ = tx.send(name);
                            }
                        }
                        None => break,
                    },
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    });
    rx
}
