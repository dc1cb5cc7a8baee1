//! Agent rows: registration, heartbeats, derived liveness, deregistration, and the incremental
//! reads that keep each API replica's in-memory directory current.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, Set,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{
    Error, Result,
    domain::{agent::AgentStatus, task::TaskStatus},
    entities::{
        agent_allocations,
        agents::{self, Column, Entity},
        tasks,
    },
};

pub async fn insert(
    db: &impl ConnectionTrait,
    model: agents::ActiveModel,
) -> Result<agents::Model> {
    match model.insert(db).await {
        Ok(m) => Ok(m),
        Err(e) if super::users::is_unique_violation(&e) => Err(Error::Conflict(
            "an agent with this name already exists".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// A registered (not deregistered) agent.
pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<agents::Model>> {
    Ok(Entity::find_by_id(id)
        .filter(Column::DeletedAt.is_null())
        .one(db)
        .await?)
}

pub async fn find_by_key_hash(
    db: &impl ConnectionTrait,
    hash: &str,
) -> Result<Option<agents::Model>> {
    Ok(Entity::find()
        .filter(Column::KeyHash.eq(hash))
        .filter(Column::DeletedAt.is_null())
        .one(db)
        .await?)
}

/// The outcome of a heartbeat: the row after it and the status before it.
pub struct Beat {
    pub agent: agents::Model,
    pub previous: AgentStatus,
}

/// Records a heartbeat. `requested` may be active, busy or paused; a stale or offline agent
/// that beats again is active. The update is conditional on the status read, so a concurrent
/// sweeper transition is never overwritten blindly.
pub async fn heartbeat(
    db: &impl ConnectionTrait,
    id: Uuid,
    reported_load: Option<i32>,
    requested: Option<AgentStatus>,
) -> Result<Beat> {
    for _ in 0..3 {
        let Some(agent) = find(db, id).await? else {
            return Err(Error::NotFound("agent"));
        };
        let previous = AgentStatus::parse(&agent.status).unwrap_or(AgentStatus::Offline);
        let next = match requested {
            Some(s @ (AgentStatus::Active | AgentStatus::Busy | AgentStatus::Paused)) => s,
            _ if matches!(previous, AgentStatus::Stale | AgentStatus::Offline) => {
                AgentStatus::Active
            }
            _ => previous,
        };
        let now = Utc::now();
        let mut update = Entity::update_many()
            .col_expr(Column::Status, Expr::value(next.as_str()))
            .col_expr(Column::LastSeen, Expr::value(now))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .col_expr(
                Column::HeartbeatCount,
                Expr::col(Column::HeartbeatCount).add(1),
            );
        if let Some(load) = reported_load {
            update = update.col_expr(Column::CurrentLoad, Expr::value(load));
        }
        let res = update
            .filter(Column::Id.eq(id))
            .filter(Column::Status.eq(previous.as_str()))
            .filter(Column::DeletedAt.is_null())
            .exec(db)
            .await?;
        if res.rows_affected == 1 {
            let agent = find(db, id).await?.ok_or(Error::NotFound("agent"))?;
            return Ok(Beat { agent, previous });
        }
    }
    Err(Error::Conflict(
        "the agent's status kept changing; retry the heartbeat".into(),
    ))
}

/// One derived transition made by [`sweep_silent`].
#[derive(Debug, Clone)]
pub struct Transition {
    pub agent: agents::Model,
    pub from: AgentStatus,
    pub to: AgentStatus,
}

/// The fastest beat an agent may declare: silence is looked for no finer than this.
const FASTEST_BEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// Marks agents that missed `stale_after` of their beats `stale`, and stale ones that missed
/// `offline_after` `offline` (each agent by its own beat, `default_beat` for those that declare
/// none). Each move is a conditional update, so concurrent sweepers move each agent once.
pub async fn sweep_silent(
    db: &impl ConnectionTrait,
    default_beat: std::time::Duration,
    stale_after: u32,
    offline_after: u32,
) -> Result<Vec<Transition>> {
    let mut moved = Vec::new();
    let steps = [
        (
            vec![AgentStatus::Active, AgentStatus::Busy, AgentStatus::Paused],
            stale_after,
            AgentStatus::Stale,
        ),
        (
            vec![AgentStatus::Stale],
            offline_after,
            AgentStatus::Offline,
        ),
    ];
    for (from, missed, to) in steps {
        let now = Utc::now();
        // Silent for at least `missed` of the fastest beats; each is then judged by its own.
        let earliest = now - chrono::Duration::from_std(FASTEST_BEAT * missed).unwrap_or_default();
        let candidates = Entity::find()
            .filter(Column::Status.is_in(from.iter().map(|s| s.as_str())))
            .filter(Column::LastSeen.lt(earliest))
            .filter(Column::DeletedAt.is_null())
            .limit(1000)
            .all(db)
            .await?;
        for agent in candidates {
            let beat = agent.heartbeat_ms.map_or(default_beat, |ms| {
                std::time::Duration::from_millis(Ord::max(ms, 1) as u64)
            });
            let before = now - chrono::Duration::from_std(beat * missed).unwrap_or_default();
            if agent.last_seen >= before {
                continue;
            }
            let res = Entity::update_many()
                .col_expr(Column::Status, Expr::value(to.as_str()))
                .col_expr(Column::UpdatedAt, Expr::value(now))
                .filter(Column::Id.eq(agent.id))
                .filter(Column::Status.eq(agent.status.as_str()))
                .filter(Column::LastSeen.lt(before))
                .exec(db)
                .await?;
            if res.rows_affected == 1 {
                let from = AgentStatus::parse(&agent.status).unwrap_or(AgentStatus::Active);
                let mut agent = agent;
                agent.status = to.as_str().into();
                agent.updated_at = now;
                moved.push(Transition { agent, from, to });
            }
        }
    }
    Ok(moved)
}

/// Deregisters: the row stays for history, the key stops working at once.
pub async fn deregister(db: &impl ConnectionTrait, id: Uuid) -> Result<bool> {
    let now = Utc::now();
    let res = Entity::update_many()
        .col_expr(Column::DeletedAt, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .col_expr(Column::Status, Expr::value(AgentStatus::Offline.as_str()))
        .col_expr(Column::KeyHash, Expr::value(format!("revoked:{id}")))
        .filter(Column::Id.eq(id))
        .filter(Column::DeletedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Rows changed at or after `since` (deregistered ones included), oldest change first.
pub async fn changed_since(
    db: &impl ConnectionTrait,
    since: DateTime<Utc>,
) -> Result<Vec<agents::Model>> {
    Ok(Entity::find()
        .filter(Column::UpdatedAt.gte(since))
        .order_by_asc(Column::UpdatedAt)
        .all(db)
        .await?)
}

#[derive(Debug, FromQueryResult)]
struct LoadRow {
    agent_id: Option<Uuid>,
    n: i64,
}

/// Tasks assigned to or running on each agent.
pub async fn running_counts(db: &impl ConnectionTrait) -> Result<HashMap<Uuid, i64>> {
    let rows = tasks::Entity::find()
        .select_only()
        .column_as(tasks::Column::AgentId, "agent_id")
        .column_as(tasks::Column::Id.count(), "n")
        .filter(crate::db::tasks::partial::condition(
            crate::db::tasks::partial::HELD,
        ))
        .filter(tasks::Column::AgentId.is_not_null())
        .group_by(tasks::Column::AgentId)
        .into_model::<LoadRow>()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.agent_id.map(|a| (a, r.n)))
        .collect())
}

#[derive(Debug, FromQueryResult)]
struct SlotRow {
    agent_id: Uuid,
    n: Option<i64>,
}

/// Unexpired reserved slots per agent.
pub async fn allocated_slots(db: &impl ConnectionTrait) -> Result<HashMap<Uuid, i64>> {
    let rows = agent_allocations::Entity::find()
        .select_only()
        .column(agent_allocations::Column::AgentId)
        .column_as(agent_allocations::Column::Slots.sum(), "n")
        .filter(agent_allocations::Column::ExpiresAt.gt(Utc::now()))
        .group_by(agent_allocations::Column::AgentId)
        .into_model::<SlotRow>()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.agent_id, r.n.unwrap_or(0)))
        .collect())
}

pub async fn allocate(
    db: &impl ConnectionTrait,
    agent_id: Uuid,
    slots: i32,
    purpose: Option<String>,
    expires_at: DateTime<Utc>,
) -> Result<agent_allocations::Model> {
    let model = agent_allocations::ActiveModel {
        id: Set(Uuid::now_v7()),
        agent_id: Set(agent_id),
        slots: Set(slots),
        purpose: Set(purpose),
        expires_at: Set(expires_at),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    // Touch the agent so every replica's directory picks up the new load.
    Entity::update_many()
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(agent_id))
        .exec(db)
        .await?;
    Ok(model)
}

/// Finished-task statistics for one agent: counts and durations (ms) of recent completions.
pub struct TaskStats {
    pub completed: u64,
    pub failed: u64,
    pub recent_durations_ms: Vec<i64>,
}

pub async fn task_stats(db: &impl ConnectionTrait, agent_id: Uuid) -> Result<TaskStats> {
    use sea_orm::PaginatorTrait;
    let finished = crate::db::tasks::partial::condition(crate::db::tasks::partial::AGENT_FINISHED);
    let count = |statuses: Vec<&'static str>| {
        tasks::Entity::find()
            .filter(finished.clone())
            .filter(tasks::Column::AgentId.eq(agent_id))
            .filter(tasks::Column::Status.is_in(statuses))
            .count(db)
    };
    let completed = count(vec![TaskStatus::Completed.as_str()]).await?;
    let failed = count(vec![TaskStatus::Failed.as_str(), TaskStatus::Dead.as_str()]).await?;
    let recent = tasks::Entity::find()
        .filter(finished)
        .filter(tasks::Column::AgentId.eq(agent_id))
        .filter(tasks::Column::Status.eq(TaskStatus::Completed.as_str()))
        .order_by_desc(tasks::Column::FinishedAt)
        .limit(1000)
        .all(db)
        .await?;
    let recent_durations_ms = recent
        .iter()
        .filter_map(|t| Some((t.finished_at? - t.started_at?).num_milliseconds()))
        .collect();
    Ok(TaskStats {
        completed,
        failed,
        recent_durations_ms,
    })
}

/// One task an agent finished (completed or dead): whether it completed, and how long its last
/// attempt kept the agent busy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub agent_id: Uuid,
    pub completed: bool,
    pub busy_ms: i64,
}

fn runs_query() -> sea_orm::Select<tasks::Entity> {
    tasks::Entity::find()
        .select_only()
        .columns([
            tasks::Column::AgentId,
            tasks::Column::Status,
            tasks::Column::StartedAt,
            tasks::Column::FinishedAt,
        ])
        .filter(crate::db::tasks::partial::condition(
            crate::db::tasks::partial::AGENT_FINISHED,
        ))
}

type RunRow = (
    Option<Uuid>,
    String,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

fn run(row: RunRow) -> Option<Run> {
    let (agent_id, status, started, finished) = row;
    Some(Run {
        agent_id: agent_id?,
        completed: status == TaskStatus::Completed.as_str(),
        busy_ms: started
            .zip(finished)
            .map_or(0, |(s, f)| Ord::max((f - s).num_milliseconds(), 0)),
    })
}

/// The tasks agents finished since `since` — one agent's, or every agent's — newest first, at
/// most `limit`.
pub async fn runs_since(
    db: &impl ConnectionTrait,
    agent: Option<Uuid>,
    since: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Run>> {
    let mut query = runs_query().filter(tasks::Column::FinishedAt.gte(since));
    query = match agent {
        Some(a) => query.filter(tasks::Column::AgentId.eq(a)),
        None => query.filter(tasks::Column::AgentId.is_not_null()),
    };
    let rows: Vec<RunRow> = query
        .order_by_desc(tasks::Column::FinishedAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(run).collect())
}

/// How long the agent's last `limit` completed tasks finished before `before` ran (ms): its own
/// latency baseline.
pub async fn baseline_durations(
    db: &impl ConnectionTrait,
    agent: Uuid,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<i64>> {
    let rows: Vec<RunRow> = runs_query()
        .filter(tasks::Column::AgentId.eq(agent))
        .filter(tasks::Column::Status.eq(TaskStatus::Completed.as_str()))
        .filter(tasks::Column::FinishedAt.lt(before))
        .order_by_desc(tasks::Column::FinishedAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(run)
        .map(|r| r.busy_ms)
        .collect())
}

pub async fn set_capabilities(
    db: &impl ConnectionTrait,
    id: Uuid,
    capabilities: serde_json::Value,
) -> Result<()> {
    Entity::update_many()
        .col_expr(Column::Capabilities, Expr::value(capabilities))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(Column::DeletedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Retention: clears the metadata and configuration (secrets included) of agents deregistered,
/// or offline, since before `cutoff`. Returns how many agents were purged.
pub async fn purge_stale_before(db: &impl ConnectionTrait, cutoff: DateTime<Utc>) -> Result<u64> {
    let gone = Condition::any().add(Column::DeletedAt.lt(cutoff)).add(
        Condition::all()
            .add(Column::Status.eq(AgentStatus::Offline.as_str()))
            .add(Column::LastSeen.lt(cutoff)),
    );
    Ok(Entity::update_many()
        .col_expr(Column::Metadata, Expr::value(serde_json::json!({})))
        .col_expr(
            Column::Configuration,
            Expr::value(Option::<serde_json::Value>::None),
        )
        .col_expr(
            Column::ConfigurationSealed,
            Expr::value(Option::<String>::None),
        )
        .col_expr(Column::MetadataSealed, Expr::value(Option::<String>::None))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(gone)
        // Not yet purged since it went: anything purged later was touched after the cutoff.
        .filter(Column::UpdatedAt.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected)
}

/// Agents with a sealed configuration or metadata, after `after` in id order: key rotation and
/// its status read the key id out of each value (a SQL `LIKE` would treat `_` in key ids as a
/// wildcard).
pub async fn with_sealed_data(
    db: &impl ConnectionTrait,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<agents::Model>> {
    let mut q = Entity::find().filter(
        Condition::any()
            .add(Column::ConfigurationSealed.is_not_null())
            .add(Column::MetadataSealed.is_not_null()),
    );
    if let Some(a) = after {
        q = q.filter(Column::Id.gt(a));
    }
    Ok(q.order_by_asc(Column::Id).limit(limit).all(db).await?)
}

/// Which sealed value of an agent.
#[derive(Debug, Clone, Copy)]
pub enum SealedField {
    Configuration,
    Metadata,
}

/// Stores a re-sealed configuration or metadata, unless it changed since it was read.
pub async fn replace_sealed(
    db: &impl ConnectionTrait,
    id: Uuid,
    field: SealedField,
    old: &str,
    new: &str,
) -> Result<bool> {
    let column = match field {
        SealedField::Configuration => Column::ConfigurationSealed,
        SealedField::Metadata => Column::MetadataSealed,
    };
    Ok(Entity::update_many()
        .col_expr(column, Expr::value(new))
        .filter(Column::Id.eq(id))
        .filter(column.eq(old))
        .exec(db)
        .await?
        .rows_affected
        == 1)
}
