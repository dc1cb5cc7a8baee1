//! The task lifecycle: every transition a task makes, decided and published in one place.
//!
//! ```text
//!            ┌──────────── assign ───────────┐
//! pending ───┤                               ▼
//! scheduled ─┴── start ──► running ◄── start ── assigned
//!                            │
//!                            ├─ complete ─────────────► completed
//!                            ├─ fail / lose, attempts left ──► failed ── (due after backoff) ──► running
//!                            ├─ fail / lose, none left, or permanent ──► dead ── retry ──► pending
//!                            └─ cancel requested ─────► cancelled ── retry ──► pending
//! ```
//!
//! Each transition is a conditional update in [`crate::db::tasks::transitions`] (so a duplicate
//! delivery, a repeated report or a race applies it once), followed by its event. The decision of
//! *which* transition to make — dead or retried, and after what backoff; a failure that raced a
//! cancel; a dead pipeline shard failing its execution — is made here and nowhere else. The
//! built-in workers' executor, the agents' REST protocol, the dispatcher (lost attempts) and the
//! operators' actions are all thin callers.
//!
//! Starts and completions are group-committed ([`commit`]): the jobs running in one process share
//! one statement per batch.

pub mod commit;
pub mod deliveries;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::{
    Result,
    bus::{EventBus, EventId, MAX_REPLAY, emit},
    db::{
        self,
        tasks::transitions::{self, Holder, Lost},
    },
    domain::{event::Event, pipeline::Stage, task::TaskStatus},
    entities::tasks::Model as Task,
};

/// The event that reported a finished attempt, rebuilt from its row.
fn outcome_event(task: &Task) -> Event {
    match TaskStatus::parse(&task.status) {
        Some(TaskStatus::Completed) => {
            let ran_ms = match (task.started_at, task.finished_at) {
                (Some(from), Some(to)) => (to - from).num_milliseconds(),
                _ => 0,
            };
            Event::task_completed(
                task,
                task.result.clone().unwrap_or(serde_json::Value::Null),
                ran_ms,
            )
        }
        Some(to) => Event::task_attempt_failed(task, to, task.error.as_deref().unwrap_or_default()),
        None => Event::task_attempt_failed(task, TaskStatus::Dead, "unknown status"),
    }
}

/// Exponential backoff with full jitter after a failed or lost attempt: between half of and the
/// whole of 2^attempt seconds, capped at 10 minutes.
pub fn backoff(attempt: i32) -> chrono::Duration {
    let attempt = attempt.clamp(0, 20) as u32;
    let cap_ms = 1000u64.saturating_mul(1 << attempt).min(600_000);
    let jittered = cap_ms / 2 + rand::random::<u64>() % (cap_ms / 2 + 1);
    chrono::Duration::milliseconds(jittered as i64)
}

/// What follows a failed or lost attempt: `failed` and due again after [`backoff`] while
/// attempts remain and the failure may be retried, otherwise `dead`.
pub fn after_failure(
    task: &Task,
    retryable: bool,
    now: DateTime<Utc>,
) -> (TaskStatus, Option<DateTime<Utc>>) {
    if !retryable || task.attempt >= task.max_attempts {
        (TaskStatus::Dead, None)
    } else {
        (TaskStatus::Failed, Some(now + backoff(task.attempt)))
    }
}

/// What became of a cancel request.
#[derive(Debug)]
pub enum Cancel {
    /// The task was waiting and is now cancelled.
    Cancelled(Task),
    /// The task is running: whoever runs it stops at its next check and acknowledges.
    Requested(Task),
    /// The task had already finished (completed, dead or cancelled); nothing changed.
    AlreadyFinished(Task),
}

/// What a progress report found.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    Recorded,
    /// A cancel was requested: the task is now cancelled, and its runner must stop.
    Cancelled,
    /// The attempt is no longer running under this holder; nothing was recorded.
    NotRunning,
}

/// The lifecycle's handle: the database, the bus, and the group committer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    db: DatabaseConnection,
    bus: Arc<dyn EventBus>,
    commits: commit::Commits,
    /// Where a built-in worker process counts its deliveries (see [`deliveries`]).
    deliveries: Option<deliveries::DeliveryLog>,
}

/// A task delivered to a built-in worker: read, counted in the delivery log, and runnable now;
/// its start is committed shortly, or together with its completion.
#[derive(Debug)]
pub struct Delivery {
    /// The task as it is while this attempt runs (`running`, attempt counted, held by the worker).
    pub task: Task,
    /// What became of the held start, until it is known.
    fate: Option<tokio::sync::oneshot::Receiver<Result<commit::Fate>>>,
    /// The start is committed (and `task.started` published).
    started: bool,
}

impl Delivery {
    /// Whether the start's fate is still unknown (it may be awaited with [`Lifecycle::await_start`]).
    pub fn start_pending(&self) -> bool {
        self.fate.is_some()
    }

    /// Whether the start is committed.
    pub fn is_started(&self) -> bool {
        self.started
    }
}

impl Lifecycle {
    /// Starts the group committer (it ends with the last clone). Needs a Tokio runtime.
    pub fn new(database: &crate::db::Database, bus: Arc<dyn EventBus>) -> Self {
        let commits = commit::Commits::spawn(database);
        Self {
            db: database.conn.clone(),
            bus,
            commits,
            deliveries: None,
        }
    }

    /// Counts this process's deliveries in a log under `dir`, after counting the attempts that
    /// processes gone before left unrecorded there. Call before taking any work.
    pub async fn with_delivery_log(mut self, dir: &std::path::Path) -> Result<Self> {
        self.recover_lost_deliveries(dir).await?;
        self.deliveries = Some(deliveries::DeliveryLog::open(dir)?);
        Ok(self)
    }

    /// Counts the attempts that dead processes logged as delivered but never recorded: a task
    /// that crashed its worker is `dead` once that was its last attempt. Returns how many.
    pub async fn recover_lost_deliveries(&self, dir: &std::path::Path) -> Result<usize> {
        let mut counted = 0;
        for (id, attempt_before) in deliveries::take_orphaned(dir)? {
            let reason = "attempt lost: its worker process stopped while running it";
            let Some(after) =
                transitions::count_lost_delivery(&self.db, id, attempt_before, reason).await?
            else {
                continue;
            };
            counted += 1;
            tracing::warn!(task_id = %id, attempt = after.attempt, status = %after.status, "a delivery was lost with its worker process");
            if after.status == TaskStatus::Dead.as_str() {
                self.report_failure(&after, reason).await;
            }
        }
        Ok(counted)
    }

    /// Takes delivery of a task for a built-in worker: reads it and, when it may start now,
    /// counts the delivery and holds its start (see [`commit::LINGER`]). `None`: not startable
    /// (a duplicate delivery, finished, cancelled, not due), and nothing changed.
    pub async fn deliver(&self, id: Uuid, agent: Option<Uuid>) -> Result<Option<Delivery>> {
        let now = Utc::now();
        let Some(row) = self.commits.read(id).await? else {
            return Ok(None);
        };
        if !transitions::startable_now(&row, now) {
            return Ok(None);
        }
        let logged = match &self.deliveries {
            Some(log) => Some(log.record(id, row.attempt)?),
            None => None,
        };
        let fate = self.commits.defer_start(&row, agent, now, logged);
        let mut task = row;
        task.status = TaskStatus::Running.as_str().into();
        task.attempt += 1;
        task.agent_id = agent;
        task.started_at = Some(now);
        task.lease_expires_at = Some(
            now + chrono::Duration::seconds(task.timeout_seconds as i64) + transitions::LEASE_GRACE,
        );
        Ok(Some(Delivery {
            task,
            fate: Some(fate),
            started: false,
        }))
    }

    /// Waits for the delivery's held start to be committed: true when it was (and
    /// `task.started` is published), false when the task may no longer start (stop running it).
    pub async fn await_start(&self, d: &mut Delivery) -> Result<bool> {
        // Cancel-safe: the receiver stays in place until it has answered, so a caller that
        // stops waiting (its handler finished first) can still finish the delivery.
        let Some(fate) = d.fate.as_mut() else {
            return Ok(d.started);
        };
        let fate = fate.await;
        d.fate = None;
        let fate = fate.unwrap_or_else(|_| {
            Err(crate::Error::Database(sea_orm::DbErr::Custom(
                "the task writer stopped".into(),
            )))
        });
        match fate? {
            commit::Fate::Started(row) => {
                d.task = *row;
                d.started = true;
                emit(self.bus.as_ref(), Event::task_started(&d.task)).await;
                Ok(true)
            }
            commit::Fate::NotStartable => Ok(false),
            commit::Fate::Fused => {
                d.started = true;
                Ok(true)
            }
        }
    }

    /// Commits the delivery's start now, if it is still held (before a failure or a cancel is
    /// recorded): true when the task is started.
    pub async fn ensure_started(&self, d: &mut Delivery) -> Result<bool> {
        if d.start_pending() {
            self.commits.flush_start(d.task.id);
        }
        self.await_start(d).await
    }

    /// Completes a delivery: with its start in one update when the start is still held,
    /// otherwise after it. False when the attempt is no longer this worker's (nothing changed).
    pub async fn complete_delivery(
        &self,
        d: &mut Delivery,
        holder: Holder,
        result: serde_json::Value,
    ) -> Result<bool> {
        if d.start_pending() {
            match self.commits.finish(d.task.id, result.clone()).await? {
                commit::Finished::Completed => {
                    d.fate = None;
                    d.started = true;
                    let ran_ms = d
                        .task
                        .started_at
                        .map_or(0, |at| (Utc::now() - at).num_milliseconds().max(0));
                    emit(self.bus.as_ref(), Event::task_started(&d.task)).await;
                    emit(
                        self.bus.as_ref(),
                        Event::task_completed(&d.task, result, ran_ms),
                    )
                    .await;
                    return Ok(true);
                }
                commit::Finished::NotStartable => {
                    d.fate = None;
                    return Ok(false);
                }
                commit::Finished::NotHeld => {
                    if !self.await_start(d).await? {
                        return Ok(false);
                    }
                }
            }
        }
        self.complete(&d.task, holder, result).await
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    /// Publishes `task.created` for a task just stored.
    pub async fn created(&self, task: &Task) {
        emit(self.bus.as_ref(), Event::task_created(task)).await;
    }

    /// `pending | scheduled | failed (due) | running (lease expired) → running` for `agent`,
    /// counting the attempt and taking the lease. `None`: not startable (a duplicate delivery,
    /// finished, cancelled, not due), and nothing changed.
    pub async fn start(&self, id: Uuid, agent: Option<Uuid>) -> Result<Option<Task>> {
        let started = self.commits.start(id, agent).await?;
        if let Some(task) = &started {
            emit(self.bus.as_ref(), Event::task_started(task)).await;
        }
        Ok(started)
    }

    /// `assigned → running` for the agent it was assigned to.
    pub async fn start_assigned(&self, id: Uuid, agent: Uuid) -> Result<Option<Task>> {
        let started = transitions::start_assigned(&self.db, id, agent).await?;
        if let Some(task) = &started {
            emit(self.bus.as_ref(), Event::task_started(task)).await;
        }
        Ok(started)
    }

    /// `pending | scheduled | failed → assigned` to one agent.
    pub async fn assign(&self, task: &Task, agent: Uuid) -> Result<bool> {
        if !transitions::assign(&self.db, task.id, agent).await? {
            return Ok(false);
        }
        emit(self.bus.as_ref(), Event::task_assigned(task, agent)).await;
        Ok(true)
    }

    /// Records progress of a running attempt; a pending cancel request is acknowledged instead.
    pub async fn progress(
        &self,
        task: &Task,
        holder: Holder,
        progress: i32,
        message: Option<String>,
    ) -> Result<Progress> {
        if task.cancel_requested {
            return Ok(if self.finish_cancel(task, holder).await? {
                Progress::Cancelled
            } else {
                Progress::NotRunning
            });
        }
        if !transitions::progress(&self.db, task.id, holder.agent, progress, message.clone())
            .await?
        {
            return Ok(Progress::NotRunning);
        }
        emit(
            self.bus.as_ref(),
            Event::task_progress(task, progress, message.as_deref()),
        )
        .await;
        Ok(Progress::Recorded)
    }

    /// `running → completed` with `result`, for the attempt `holder` runs. False when that
    /// attempt is no longer running (a repeated completion, a cancel, a lost lease): nothing
    /// changed.
    pub async fn complete(
        &self,
        task: &Task,
        holder: Holder,
        result: serde_json::Value,
    ) -> Result<bool> {
        if !self
            .commits
            .complete(task.id, holder, result.clone())
            .await?
        {
            return Ok(false);
        }
        let ran_ms = task
            .started_at
            .map_or(0, |at| (Utc::now() - at).num_milliseconds().max(0));
        emit(
            self.bus.as_ref(),
            Event::task_completed(task, result, ran_ms),
        )
        .await;
        Ok(true)
    }

    /// A failed attempt: `running → failed` (retried after a backoff) or `running → dead`
    /// (attempts exhausted, or `retryable` false), or `cancelled` when a cancel was requested
    /// meanwhile. A dead pipeline shard fails its execution. Returns the status the task took,
    /// or `None` when the attempt was no longer running under `holder` (nothing changed).
    pub async fn fail(
        &self,
        task: &Task,
        holder: Holder,
        error: &str,
        retryable: bool,
    ) -> Result<Option<TaskStatus>> {
        let (to, retry_at) = after_failure(task, retryable, Utc::now());
        let Some(after) = transitions::fail(&self.db, task.id, holder, error, to, retry_at).await?
        else {
            return Ok(None);
        };
        self.report_failure(&after, error).await;
        Ok(TaskStatus::parse(&after.status))
    }

    /// Releases attempts that were lost (a lease expired, a worker went silent or was
    /// deregistered): each is a failed attempt, decided by [`after_failure`]. Returns how many.
    pub async fn release_lost(&self, which: Lost, reason: &str) -> Result<usize> {
        // An attempt whose agent died is due again at once (the task did nothing wrong, and
        // the attempt still counts, so a task that kills its worker still ends dead); one that
        // outlived its lease backs off like a failure.
        let at_once = !matches!(which, Lost::ExpiredLeases);
        let released = transitions::release_lost(&self.db, which, reason, |t, now| {
            match after_failure(t, true, now) {
                (TaskStatus::Failed, Some(_)) if at_once => (TaskStatus::Failed, Some(now)),
                decided => decided,
            }
        })
        .await?;
        for task in &released {
            tracing::warn!(task_id = %task.id, status = %task.status, attempt = task.attempt, reason, "running attempt lost");
            self.report_failure(task, reason).await;
        }
        Ok(released.len())
    }

    /// What follows a recorded failure: the cancel that won the race, or the failure itself
    /// (and, for a dead pipeline shard, the failure of its execution).
    async fn report_failure(&self, after: &Task, error: &str) {
        match TaskStatus::parse(&after.status) {
            Some(TaskStatus::Cancelled) => {
                emit(self.bus.as_ref(), Event::task_cancelled(after)).await;
            }
            Some(to) => {
                if to == TaskStatus::Dead {
                    self.shard_dead(after, error).await;
                }
                tracing::warn!(task_id = %after.id, status = %to, error, "task attempt failed");
                emit(
                    self.bus.as_ref(),
                    Event::task_attempt_failed(after, to, error),
                )
                .await;
            }
            None => {}
        }
    }

    /// `running` with a cancel request → `cancelled`: its runner acknowledged.
    pub async fn finish_cancel(&self, task: &Task, holder: Holder) -> Result<bool> {
        if !transitions::finish_cancel(&self.db, task.id, holder).await? {
            return Ok(false);
        }
        emit(self.bus.as_ref(), Event::task_cancelled(task)).await;
        Ok(true)
    }

    /// Cancels: a waiting task at once; a running one is asked to stop (its runner acknowledges
    /// with [`Lifecycle::finish_cancel`]).
    pub async fn cancel(&self, id: Uuid) -> Result<Cancel> {
        let before = db::tasks::find(&self.db, id)
            .await?
            .ok_or(crate::Error::NotFound("task"))?;
        if TaskStatus::parse(&before.status).is_some_and(TaskStatus::is_terminal) {
            return Ok(Cancel::AlreadyFinished(before));
        }
        let after = transitions::cancel(&self.db, id).await?;
        Ok(match TaskStatus::parse(&after.status) {
            Some(TaskStatus::Cancelled) => {
                if before.status != after.status {
                    emit(self.bus.as_ref(), Event::task_cancelled(&after)).await;
                }
                Cancel::Cancelled(after)
            }
            Some(s) if s.is_terminal() => Cancel::AlreadyFinished(after),
            _ => Cancel::Requested(after),
        })
    }

    /// Sends a dead or cancelled task round again with a fresh attempt budget. `None` when the
    /// task is in another state or retention purged its payload.
    pub async fn retry(&self, id: Uuid) -> Result<Option<Task>> {
        if !transitions::retry(&self.db, id).await? {
            return Ok(None);
        }
        let task = db::tasks::find(&self.db, id).await?;
        if let Some(task) = &task {
            emit(self.bus.as_ref(), Event::task_requeued(task)).await;
        }
        Ok(task)
    }

    /// Tasks assigned to agents that went silent before claiming them go back to pending. No
    /// attempt was made, so none is counted.
    /// Assignments not claimed within `timeout` are released to their queues, each with a
    /// `task.unassigned` event. Returns the tasks as they were assigned.
    pub async fn release_unclaimed(&self, timeout: std::time::Duration) -> Result<Vec<Task>> {
        let before = Utc::now()
            - chrono::Duration::from_std(timeout).unwrap_or_else(|_| chrono::Duration::days(1));
        let moved = transitions::unassign_unclaimed(&self.db, before).await?;
        for task in &moved {
            tracing::warn!(task_id = %task.id, agent_id = ?task.agent_id, "assignment not claimed in time; back to its queue");
            emit(
                self.bus.as_ref(),
                Event::task_unassigned(task, task.agent_id, "assignment_timeout"),
            )
            .await;
        }
        Ok(moved)
    }

    pub async fn unassign_from_silent_agents(&self) -> Result<Vec<Uuid>> {
        let moved = transitions::unassign(&self.db, Lost::HeldBySilentAgents).await?;
        for id in &moved {
            tracing::warn!(task_id = %id, "assigned agent went silent before claiming; routing again");
        }
        Ok(moved)
    }

    /// A worker process fell silent (killed): the outcome events of the attempts it finished
    /// last may have died with it, committed but still queued to be sent. Publishes again, from
    /// the task rows, the outcome of each attempt it finished since `since` that the event
    /// stream does not hold, waiting for each to be stored. Call before releasing its running
    /// attempts (their events are not in the stream yet either). Returns how many were
    /// published.
    pub async fn republish_outcomes(&self, agent: Uuid, since: DateTime<Utc>) -> Result<usize> {
        // Only what the stream still covers can be checked: an outcome from before its oldest
        // event is left alone (sending it again could only duplicate what was trimmed).
        let mut since = since;
        if let Some(oldest) = self.bus.oldest().await? {
            let horizon =
                DateTime::<Utc>::from_timestamp_millis(oldest.0 as i64 + 1).unwrap_or(since);
            if horizon > since {
                tracing::warn!(%agent, "the event stream no longer reaches back to all of the worker's last transitions");
                since = horizon;
            }
        }
        let finished = transitions::finished_by(&self.db, agent, since).await?;
        if finished.is_empty() {
            return Ok(0);
        }
        let mut sent = std::collections::HashSet::new();
        let from = EventId(since.timestamp_millis().max(0) as u64, 0);
        let mut after = from;
        loop {
            let page = self.bus.replay(after).await?;
            sent.extend(page.iter().filter_map(|e| Some((e.task_id?, e.kind))));
            match page.last().and_then(|e| EventId::parse(&e.id)) {
                Some(last) if page.len() >= MAX_REPLAY => after = last,
                _ => break,
            }
        }
        let mut published = 0;
        for task in &finished {
            let event = outcome_event(task);
            if sent.contains(&(task.id, event.kind)) {
                continue;
            }
            // Sent and confirmed before the agent's attempts are released.
            self.bus.publish(event).await?;
            published += 1;
        }
        if published > 0 {
            tracing::warn!(%agent, published, "published again the outcomes a killed worker had not sent");
        }
        Ok(published)
    }

    /// An agent was deregistered: its running attempts are lost (and counted), the tasks
    /// assigned to it go back to pending. Returns how many tasks it let go of.
    pub async fn release_agent(&self, agent: Uuid) -> Result<usize> {
        let lost = self
            .release_lost(
                Lost::HeldBy(agent),
                "attempt lost: its agent was deregistered",
            )
            .await?;
        let unassigned = transitions::unassign(&self.db, Lost::HeldBy(agent)).await?;
        Ok(lost + unassigned.len())
    }

    /// A pipeline shard's task is dead: its execution fails, and its other open tasks are
    /// cancelled. Does nothing for tasks that are not shards.
    async fn shard_dead(&self, task: &Task, error: &str) {
        let (Some(execution), Some(stage)) = (
            task.execution_id,
            task.stage.as_deref().and_then(Stage::parse),
        ) else {
            return;
        };
        let shard = task
            .payload
            .get("shard")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0) as u32;
        if let Err(e) = self.fail_execution(execution, stage, shard, error).await {
            tracing::error!(%execution, error = %e, "could not record the failed execution");
        }
    }

    /// Fails an execution because shard `shard` of `stage` failed for good.
    pub async fn fail_execution(
        &self,
        execution: Uuid,
        stage: Stage,
        shard: u32,
        error: &str,
    ) -> Result<()> {
        use crate::domain::pipeline::PipelineStatus;
        db::pipelines::fail_shard(&self.db, execution, stage, shard, error).await?;
        let reason = format!("stage {stage} failed on shard {shard}: {error}");
        if db::pipelines::end(&self.db, execution, PipelineStatus::Failed, Some(&reason)).await? {
            self.cancel_open_tasks(execution).await?;
            tracing::warn!(%execution, %stage, error, "pipeline failed");
            emit(
                self.bus.as_ref(),
                Event::pipeline_failed(execution, stage, shard, &reason),
            )
            .await;
        }
        Ok(())
    }

    /// Cancels every task of an execution that has not finished (the execution ended).
    pub async fn cancel_open_tasks(&self, execution: Uuid) -> Result<()> {
        for t in db::pipelines::open_tasks(&self.db, execution).await? {
            self.cancel(t.id).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..30 {
            let d = backoff(attempt).num_milliseconds();
            let cap = (1000i64 << attempt.min(20)).min(600_000);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d}ms");
        }
    }
}
