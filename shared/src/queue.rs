//! The queue seam: where jobs wait between the API and the workers.
//!
//! Queue names are explicit, `mcp:{capability}:{tier}` (never a Rust type path, which the
//! queue library would otherwise use), and a job carries only a [`JobRef`]: the task row is the
//! source of truth. Two backends implement [`JobQueue`]: apalis' in-memory backend for the single
//! node (fed from the task rows, which stay the record), apalis-redis for distributed deployments.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
};

use apalis_core::{backend::TaskSink, worker::context::WorkerContext};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Result, domain::task::Priority};

/// What a job carries: which task to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRef {
    pub task_id: Uuid,
}

/// A job to push: the reference and, for scheduled tasks and retries, when it becomes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub job: JobRef,
    pub run_at: Option<DateTime<Utc>>,
}

impl Job {
    pub fn now(task_id: Uuid) -> Self {
        Self {
            job: JobRef { task_id },
            run_at: None,
        }
    }

    pub fn at(task_id: Uuid, run_at: Option<DateTime<Utc>>) -> Self {
        Self {
            job: JobRef { task_id },
            run_at,
        }
    }

    fn into_task(self) -> apalis_core::task::Task<JobRef> {
        let builder = apalis_core::task::builder::TaskBuilder::new(self.job);
        match self.run_at {
            Some(at) if at > Utc::now() => builder.run_at_time(at.into()),
            _ => builder,
        }
        .build()
    }
}

/// `mcp:{capability}:{tier}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueName {
    pub capability: String,
    pub tier: Priority,
}

impl QueueName {
    pub fn new(capability: impl Into<String>, tier: Priority) -> Self {
        Self {
            capability: capability.into(),
            tier,
        }
    }

    /// `mcp:{capability}:{tier}` back into its parts; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("mcp:")?;
        let (capability, tier) = rest.rsplit_once(':')?;
        Some(Self::new(capability, Priority::parse(tier)?))
    }

    /// The four tiers of one capability, most urgent first.
    pub fn tiers(capability: &str) -> impl Iterator<Item = QueueName> + '_ {
        Priority::ALL
            .iter()
            .map(move |tier| QueueName::new(capability, *tier))
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mcp:{}:{}", self.capability, self.tier)
    }
}

/// Most capabilities a combined queue names: workers serve every combination of their
/// capabilities up to this size, and a task needing more can only be claimed by an agent.
pub const MAX_COMBINED: usize = 3;

/// The capability part of a queue name for a task that needs `required`: the one capability, or
/// several sorted and joined with `+` (`mcp:analysis+validation:high`), so that only a worker or
/// agent holding all of them serves that queue.
pub fn capability_key(required: &[String]) -> String {
    let mut caps: Vec<&str> = required.iter().map(String::as_str).collect();
    caps.sort_unstable();
    caps.dedup();
    caps.join("+")
}

/// Whether a capability may appear in a combined key. Pipeline stage capabilities do not: a
/// shard task needs exactly its stage, and leaving them out keeps a worker serving all six stages
/// from polling dozens of combined queues that can never fill.
pub fn combinable(capability: &str) -> bool {
    crate::domain::pipeline::Stage::from_capability(capability).is_none()
}

/// Every capability key a holder of `caps` serves: each capability alone and every combination
/// of up to [`MAX_COMBINED`] [`combinable`] ones.
pub fn served_keys(caps: &[String]) -> Vec<String> {
    let mut caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    caps.sort_unstable();
    caps.dedup();
    let (combining, single): (Vec<&str>, Vec<&str>) = caps.into_iter().partition(|c| combinable(c));
    let caps = combining;
    let mut keys: Vec<String> = single.iter().map(|c| c.to_string()).collect();
    fn walk<'a>(
        caps: &[&'a str],
        start: usize,
        current: &mut Vec<&'a str>,
        keys: &mut Vec<String>,
    ) {
        for i in start..caps.len() {
            current.push(caps[i]);
            keys.push(current.join("+"));
            if current.len() < MAX_COMBINED {
                walk(caps, i + 1, current, keys);
            }
            current.pop();
        }
    }
    walk(&caps, 0, &mut Vec::new(), &mut keys);
    keys
}

/// Pushes jobs; the worker side (pulling) lives in the worker crate.
#[async_trait::async_trait]
pub trait JobQueue: Send + Sync + fmt::Debug {
    /// Pushes jobs onto one queue in one round trip where the backend allows.
    async fn push(&self, queue: &QueueName, jobs: Vec<Job>) -> Result<()>;
    /// Checks that the backend answers (for `/ready`).
    async fn ping(&self) -> Result<()>;
    /// Jobs the backend holds for `queue` (waiting, scheduled, or fetched by a live worker), when
    /// it can tell; the dispatcher uses it to tell a lost push from a long wait.
    async fn held(&self, _queue: &QueueName) -> Result<Option<u64>> {
        Ok(None)
    }
    /// A short name for logs and readiness messages.
    fn backend_name(&self) -> &'static str;
    /// Most jobs the dispatcher keeps waiting in one queue of this backend.
    fn capacity(&self) -> i64;
}

/// Redis pub/sub channel on which a push announces the queue name, so idle workers fetch at
/// once instead of waiting for their next poll.
pub const WAKE_CHANNEL: &str = "mcp:wake";

/// The single node's embedded queue: one apalis backend per queue, in memory, in the API process.
///
/// The task rows are the durable record; the queue only holds references to due tasks, fed by
/// the dispatcher. A restart loses the queue's contents and nothing else: the rows still say the
/// tasks are waiting, and the dispatcher (whose record of what it pushed went with the process)
/// pushes them again.
#[derive(Debug, Clone, Default)]
pub struct MemoryQueue {
    queues: Arc<Mutex<HashMap<String, MemoryBackend>>>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// The backend of `queue`, for an apalis worker to pull from (created on first use).
    pub fn backend(&self, queue: &QueueName) -> MemoryBackend {
        self.queues
            .lock()
            .expect("queue map lock")
            .entry(queue.to_string())
            .or_default()
            .clone()
    }
}

#[async_trait::async_trait]
impl JobQueue for MemoryQueue {
    async fn push(&self, queue: &QueueName, jobs: Vec<Job>) -> Result<()> {
        self.backend(queue).push(jobs.into_iter().map(|j| j.job));
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn held(&self, queue: &QueueName) -> Result<Option<u64>> {
        Ok(Some(self.backend(queue).len() as u64))
    }

    fn backend_name(&self) -> &'static str {
        "embedded queue"
    }

    /// Memory is the only bound: a batch of 10,000 goes in whole, right after its commit.
    fn capacity(&self) -> i64 {
        20_000
    }
}

/// One in-memory queue as an apalis backend: a deque shared by whoever pushes and the worker
/// that pulls, which sleeps until a push wakes it (no polling interval).
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<Deque>>,
}

#[derive(Debug, Default)]
struct Deque {
    jobs: VecDeque<JobRef>,
    waker: Option<Waker>,
}

impl MemoryBackend {
    fn push(&self, jobs: impl IntoIterator<Item = JobRef>) {
        let mut deque = self.inner.lock().expect("queue lock");
        deque.jobs.extend(jobs);
        if let Some(waker) = deque.waker.take() {
            waker.wake();
        }
    }

    /// Jobs waiting.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("queue lock").jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the next job without a worker: for tests that step jobs one at a time.
    pub fn pop(&self) -> Option<JobRef> {
        self.inner.lock().expect("queue lock").jobs.pop_front()
    }
}

impl apalis_core::backend::Backend for MemoryBackend {
    type Task = apalis_core::task::Task<JobRef>;
    type Error = std::convert::Infallible;

    fn poll_ready(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<std::result::Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Option<std::result::Result<Self::Task, Self::Error>>> {
        let mut deque = self.inner.lock().expect("queue lock");
        match deque.jobs.pop_front() {
            Some(job) => Poll::Ready(Some(Ok(apalis_core::task::Task::new(job)))),
            None => {
                deque.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn poll_close(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<std::result::Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

impl apalis_core::backend::BackendConfig for MemoryBackend {
    type Args = JobRef;
    type Id = apalis_core::task::task_id::RandomId;
    type Kind = apalis_core::backend::finalize::Ephemeral;
    type Config = ();
    type Layer = apalis_core::layers::Identity;

    fn config(&self) -> &Self::Config {
        &()
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        apalis_core::layers::Identity::new()
    }
}

/// apalis-redis storage (distributed).
#[derive(Clone)]
pub struct RedisQueue {
    conn: redis::aio::ConnectionManager,
}

impl fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueue").finish_non_exhaustive()
    }
}

impl RedisQueue {
    pub fn new(conn: redis::aio::ConnectionManager) -> Self {
        Self { conn }
    }

    pub fn storage(&self, queue: &QueueName) -> apalis_redis::RedisStorage<JobRef> {
        apalis_redis::RedisStorage::new(self.conn.clone())
            .with_config(apalis_redis::Config::default().queue(queue.to_string()))
    }
}

#[async_trait::async_trait]
impl JobQueue for RedisQueue {
    async fn push(&self, queue: &QueueName, jobs: Vec<Job>) -> Result<()> {
        let mut tasks = futures::stream::iter(jobs.into_iter().map(Job::into_task));
        self.storage(queue)
            .push_all(&mut tasks)
            .await
            .map_err(Error::queue)?;
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(WAKE_CHANNEL)
            .arg(queue.to_string())
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }

    /// apalis-redis moves every due job of a queue in one script call when it fetches, and that
    /// call fails past about 8,000; well under it, the call stays short too.
    fn capacity(&self) -> i64 {
        2_000
    }

    async fn held(&self, queue: &QueueName) -> Result<Option<u64>> {
        // apalis-redis keys: `{q}:active` (list), `{q}:scheduled` (zset), and one
        // `{q}:inflight:{worker}` set per worker registered in `{q}:workers`.
        let script = redis::Script::new(
            r"local n = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
              for _, w in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
                  n = n + redis.call('SCARD', KEYS[4] .. ':' .. w)
              end
              return n",
        );
        let q = queue.to_string();
        let mut conn = self.conn.clone();
        let n: u64 = script
            .key(format!("{q}:active"))
            .key(format!("{q}:scheduled"))
            .key(format!("{q}:workers"))
            .key(format!("{q}:inflight"))
            .invoke_async(&mut conn)
            .await?;
        Ok(Some(n))
    }
}

/// Connects to Redis with a connection manager that reconnects by itself.
pub async fn connect_redis(url: &str) -> Result<redis::aio::ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
        .set_response_timeout(Some(std::time::Duration::from_secs(10)));
    Ok(client.get_connection_manager_with_config(config).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_keys_need_every_capability() {
        let caps = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            capability_key(&caps(&["validation", "analysis"])),
            "analysis+validation"
        );
        assert_eq!(capability_key(&caps(&["export"])), "export");
        let served = served_keys(&caps(&["validation", "analysis", "export"]));
        assert_eq!(
            served,
            [
                "analysis",
                "analysis+export",
                "analysis+export+validation",
                "analysis+validation",
                "export",
                "export+validation",
                "validation"
            ]
        );
        assert!(!served_keys(&caps(&["analysis"])).contains(&"analysis+validation".to_string()));
    }

    #[test]
    fn queue_names_are_explicit() {
        assert_eq!(
            QueueName::new("generic", Priority::Critical).to_string(),
            "mcp:generic:critical"
        );
        assert_eq!(
            QueueName::parse("mcp:analysis+validation:high"),
            Some(QueueName::new("analysis+validation", Priority::High))
        );
        assert_eq!(QueueName::parse("mcp:generic:urgent"), None);
        assert_eq!(QueueName::parse("generic:low"), None);
        let tiers: Vec<String> = QueueName::tiers("export").map(|q| q.to_string()).collect();
        assert_eq!(
            tiers,
            [
                "mcp:export:critical",
                "mcp:export:high",
                "mcp:export:medium",
                "mcp:export:low"
            ]
        );
    }
}
