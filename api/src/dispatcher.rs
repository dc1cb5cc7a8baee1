//! The dispatcher: the only path from a task row to its queue besides the create fast path.
//!
//! The database holds every task; the queue backend holds at most its
//! [`capacity`](mcp_shared::queue::JobQueue::capacity) of waiting jobs per queue. That bound is
//! what keeps apalis-redis working (its fetch moves *all* due jobs in one script call and fails
//! past ~8,000). Each tick:
//! 1. attempts whose lease expired are released (`failed`, due again after a backoff, or `dead`);
//! 2. due tasks without a job (new batches, retries that came due, scheduled tasks, pushes that
//!    failed) are pushed, oldest first, up to each queue's remaining room; paused queues are skipped;
//! 3. now and then, jobs pushed more than `MCP_REDELIVER_AFTER_MS` ago whose task never started
//!    are presumed lost (a killed worker had fetched them) and owed again.
//!
//! In distributed mode one replica at a time dispatches (a Redis lock with a short expiry);
//! every step is a conditional update or idempotent, so a change of leader loses nothing.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use mcp_shared::{
    Settings,
    db::{
        Database,
        tasks::{dispatch, transitions::Lost},
    },
    entities::queue_states,
    lifecycle::Lifecycle,
    queue::{Job, JobQueue, QueueName},
};
use redis::aio::ConnectionManager;
use sea_orm::EntityTrait;
use tokio::sync::{Mutex, Notify, RwLock};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TICK: Duration = Duration::from_millis(100);
/// The next tick, while some queue has more due work than room: soon, so a queue drained by its
/// workers is topped up before they run dry.
const REFILL: Duration = Duration::from_millis(5);
const LEADER_KEY: &str = "mcp:dispatcher:leader";
/// Kept in Redis beside the jobs: when it is gone, so are the jobs (Redis restarted empty).
const JOBS_MARKER_KEY: &str = "mcp:dispatcher:jobs";
const LEADER_TTL_MS: u64 = 3000;

#[derive(Debug)]
pub struct Dispatcher {
    settings: Arc<Settings>,
    db: Database,
    queue: Arc<dyn JobQueue>,
    /// Releases lost attempts.
    lifecycle: Lifecycle,
    /// The leader lock, in distributed mode.
    redis: Option<ConnectionManager>,
    wake: Notify,
    /// New work was written: the next round is a full one.
    woken: std::sync::atomic::AtomicBool,
    /// Jobs each queue's backend holds, as last asked (what the create fast path has room for).
    waiting: Mutex<HashMap<String, i64>>,
    paused: RwLock<HashSet<String>>,
    /// Queues the last full round found waiting tasks in, which refills between rounds top up.
    due: Mutex<Vec<String>>,
    instance: String,
    /// Whether the last tick held the leader lock; cluster-wide duties (alerts, cluster metrics)
    /// follow the same leader.
    leading: std::sync::atomic::AtomicBool,
}

impl Dispatcher {
    pub fn new(
        settings: Arc<Settings>,
        db: Database,
        queue: Arc<dyn JobQueue>,
        lifecycle: Lifecycle,
        redis: Option<ConnectionManager>,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            db,
            queue,
            lifecycle,
            redis,
            wake: Notify::new(),
            woken: std::sync::atomic::AtomicBool::new(false),
            waiting: Mutex::new(HashMap::new()),
            paused: RwLock::new(HashSet::new()),
            due: Mutex::new(Vec::new()),
            instance: Uuid::new_v4().to_string(),
            leading: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Asks for a tick now (new work was written).
    pub fn wake(&self) {
        self.woken.store(true, std::sync::atomic::Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Reserves room for one job on `queue` for the create fast path. False when the queue is
    /// full or paused: the dispatcher will push the task when there is room.
    pub async fn reserve(&self, queue: &str) -> bool {
        self.reserve_up_to(queue, 1).await == 1
    }

    /// Reserves room for up to `n` jobs on `queue` (a batch's tasks, pushed right after their
    /// commit); returns how many fit. The dispatcher pushes the rest when there is room.
    pub async fn reserve_up_to(&self, queue: &str, n: i64) -> i64 {
        if self.paused.read().await.contains(queue) {
            return 0;
        }
        let mut waiting = self.waiting.lock().await;
        let w = waiting.entry(queue.to_string()).or_insert(0);
        let granted = n.min(self.queue.capacity() - *w).max(0);
        *w += granted;
        granted
    }

    /// True while this replica is the dispatching leader (always, on a single node, once the
    /// first tick ran).
    pub fn is_leader(&self) -> bool {
        self.leading.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn is_paused(&self, queue: &str) -> bool {
        self.paused.read().await.contains(queue)
    }

    /// Dispatches until `shutdown`.
    pub fn spawn(self: &Arc<Self>, shutdown: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut last_lost_check = Instant::now();
            let mut last_upkeep = Instant::now();
            // Look for lost pushes a few times per redelivery period.
            let check_every = (me.settings.redeliver_after / 4)
                .clamp(Duration::from_millis(250), Duration::from_secs(15));
            let mut next = TICK;
            loop {
                tokio::select! {
                    _ = me.wake.notified() => {}
                    _ = tokio::time::sleep(next) => {}
                    _ = shutdown.cancelled() => return,
                }
                let check_lost = last_lost_check.elapsed() >= check_every;
                if check_lost {
                    last_lost_check = Instant::now();
                }
                // Lost attempts and silent agents are looked for at the normal pace; refills
                // in between only push.
                let woken = me.woken.swap(false, std::sync::atomic::Ordering::Relaxed);
                let upkeep = woken || last_upkeep.elapsed() >= TICK;
                if upkeep {
                    last_upkeep = Instant::now();
                }
                next = match me.tick(upkeep, check_lost).await {
                    Ok(true) => REFILL,
                    Ok(false) => TICK,
                    Err(e) => {
                        tracing::warn!(error = %e, "dispatch tick failed");
                        TICK
                    }
                };
            }
        });
    }

    /// One round; true when some queue was left with more due work than it had room for. A
    /// full round (`upkeep`) also finds which queues have waiting tasks; a refill in between only
    /// tops those up. What a queue holds is asked of its backend (the job record there), never
    /// counted from the task rows.
    async fn tick(&self, upkeep: bool, check_lost: bool) -> mcp_shared::Result<bool> {
        let db = &self.db.conn;
        if upkeep {
            self.refresh().await?;
            *self.due.lock().await = dispatch::queues_with_waiting(db).await?;
        }
        let queues = self.due.lock().await.clone();
        // Every replica keeps its view of the queues, so its create fast path stays usable.
        let mut held = HashMap::new();
        for queue in &queues {
            if let Some(name) = QueueName::parse(queue)
                && let Some(n) = self.queue.held(&name).await?
            {
                held.insert(queue.clone(), n as i64);
            }
        }
        self.waiting.lock().await.extend(held.clone());
        let leading = self.lead().await;
        self.leading
            .store(leading, std::sync::atomic::Ordering::Relaxed);
        if !leading {
            return Ok(false);
        }
        if upkeep {
            self.owe_pushes_if_jobs_were_lost().await?;
            self.release_lost().await?;
            if check_lost {
                self.owe_lost_pushes(&held).await?;
            }
        }
        // Per queue, so a full or paused queue never holds up the others.
        let mut more = false;
        for queue in queues {
            let Some(name) = QueueName::parse(&queue) else {
                tracing::error!(
                    queue,
                    "tasks name a queue that is not `mcp:{{capability}}:{{tier}}`"
                );
                continue;
            };
            if self.paused.read().await.contains(&queue) {
                continue;
            }
            let room = self.queue.capacity() - held.get(&queue).copied().unwrap_or(0);
            // Topping up a nearly full queue is not worth a round trip.
            if room <= 0 || (!upkeep && room < self.queue.capacity() / 4) {
                more = true;
                continue;
            }
            let ids = dispatch::due_in_queue(db, &queue, room as u64).await?;
            if ids.is_empty() {
                continue;
            }
            // A full page means more may be due behind it.
            more |= ids.len() as i64 == room;
            dispatch::mark_enqueued(db, &ids, Some(Utc::now())).await?;
            for (i, chunk) in ids.chunks(500).enumerate() {
                let jobs = chunk.iter().map(|id| Job::now(*id)).collect();
                if let Err(e) = self.queue.push(&name, jobs).await {
                    // Owe this chunk and every one after it again; the next tick retries.
                    dispatch::mark_enqueued(db, &ids[i * 500..], None).await?;
                    return Err(e);
                }
            }
            *self.waiting.lock().await.entry(queue).or_insert(0) += ids.len() as i64;
        }
        Ok(more)
    }

    /// Attempts whose lease expired or whose worker went silent are lost; tasks assigned to
    /// silent agents go back to their queues.
    async fn release_lost(&self) -> mcp_shared::Result<()> {
        for (which, reason) in [
            (Lost::ExpiredLeases, "attempt lost: its lease expired"),
            (
                Lost::HeldBySilentAgents,
                "attempt lost: its worker stopped sending heartbeats",
            ),
        ] {
            self.lifecycle.release_lost(which, reason).await?;
        }
        self.lifecycle.unassign_from_silent_agents().await?;
        Ok(())
    }

    /// A queue backend that lost its contents (Redis restarted empty) lost every job pushed to
    /// it: all of them are owed again at once, instead of after `MCP_REDELIVER_AFTER_MS`. Told by
    /// a marker kept in Redis with the jobs: absent means they went together.
    async fn owe_pushes_if_jobs_were_lost(&self) -> mcp_shared::Result<()> {
        let Some(mut conn) = self.redis.clone() else {
            return Ok(());
        };
        let set: Option<String> = redis::cmd("SET")
            .arg(JOBS_MARKER_KEY)
            .arg(&self.instance)
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        if set.is_some() {
            let owed = dispatch::forget_all_pushes(&self.db.conn).await?;
            if owed > 0 {
                tracing::warn!(owed, "the queue backend lost its jobs; pushing them again");
            }
        }
        Ok(())
    }

    /// Pushed long ago and not started: lost only if the backend holds fewer jobs for the queue
    /// than the task rows say were pushed; otherwise the queue is just long, and pushing again
    /// would only pile up duplicates.
    async fn owe_lost_pushes(&self, held: &HashMap<String, i64>) -> mcp_shared::Result<()> {
        let lost_after =
            chrono::Duration::from_std(self.settings.redeliver_after).unwrap_or_default();
        for (queue, held) in held {
            let pushed = dispatch::pushed_in_queue(&self.db.conn, queue).await? as i64;
            let missing = (pushed - held).max(0) as u64;
            if missing == 0 {
                continue;
            }
            let owed = dispatch::forget_stale_pushes(
                &self.db.conn,
                queue,
                Utc::now() - lost_after,
                missing,
            )
            .await?;
            if owed > 0 {
                tracing::warn!(queue, owed, "pushed jobs were lost; pushing them again");
            }
        }
        Ok(())
    }

    /// Re-reads which queues are paused.
    pub async fn refresh(&self) -> mcp_shared::Result<()> {
        let rows = queue_states::Entity::find().all(&self.db.conn).await?;
        *self.paused.write().await = rows
            .into_iter()
            .filter(|r| r.paused)
            .map(|r| r.name)
            .collect();
        Ok(())
    }

    /// True when this replica may dispatch: always on a single node; in distributed mode while
    /// it holds (or just took) the leader lock.
    async fn lead(&self) -> bool {
        let Some(mut conn) = self.redis.clone() else {
            return true;
        };
        let script = redis::Script::new(
            r"if redis.call('GET', KEYS[1]) == ARGV[1] then
                  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
              end
              if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
              return 0",
        );
        script
            .key(LEADER_KEY)
            .arg(&self.instance)
            .arg(LEADER_TTL_MS)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|r| r == 1)
            .unwrap_or(false)
    }
}
