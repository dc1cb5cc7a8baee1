//! The agent directory: an in-memory index of registered agents, by id and by capability, so
//! discovery and assignment never scan the agents table.
//!
//! The database stays the source of truth. Each replica applies its own changes at once and pulls
//! everyone else's incrementally (rows whose `updated_at` moved, plus current task and allocation
//! load) every [`SYNC_INTERVAL`], so a change made on one replica is visible on all within that.
//! Every `CACHE_TTL_SECONDS` the whole index is read again from the database, so nothing the
//! incremental pull could miss (a replica's clock far behind, a row edited by hand) outlives it.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use mcp_shared::{
    db::{Database, agents},
    domain::agent::{AgentStatus, AgentType, Capability},
    entities::agents::Model,
    shutdown::spawn_every,
};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SYNC_INTERVAL: Duration = Duration::from_millis(500);
/// Rows are re-read from slightly before the last sync, so a commit that raced the previous
/// read is not missed.
const SYNC_OVERLAP: chrono::Duration = chrono::Duration::seconds(2);

/// One agent as the directory knows it.
#[derive(Debug, Clone)]
pub struct AgentEntry {
    pub model: Model,
    pub agent_type: AgentType,
    pub status: AgentStatus,
    pub capabilities: Vec<Capability>,
    /// Tasks assigned to or running on the agent.
    pub running: i64,
    /// Unexpired reserved slots.
    pub allocated: i64,
}

impl AgentEntry {
    fn from_model(model: Model) -> Self {
        let capabilities: Vec<Capability> =
            serde_json::from_value(model.capabilities.clone()).unwrap_or_default();
        Self {
            agent_type: AgentType::parse(&model.agent_type).unwrap_or(AgentType::ExternalApi),
            status: AgentStatus::parse(&model.status).unwrap_or(AgentStatus::Offline),
            capabilities,
            running: 0,
            allocated: 0,
            model,
        }
    }

    /// Load as the contract defines it: running tasks plus reserved slots (or what the agent
    /// reports, if higher, for work we do not see).
    pub fn load(&self) -> i64 {
        self.running.max(self.model.current_load as i64) + self.allocated
    }

    /// Load over capacity; the discovery ordering key after health.
    pub fn load_ratio(&self) -> f64 {
        self.load() as f64 / self.model.max_concurrency.max(1) as f64
    }

    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| c.name == name)
    }
}

#[derive(Debug, Default)]
struct Index {
    agents: HashMap<Uuid, AgentEntry>,
    by_capability: HashMap<String, HashSet<Uuid>>,
}

impl Index {
    fn remove(&mut self, id: Uuid) {
        if let Some(old) = self.agents.remove(&id) {
            for c in &old.capabilities {
                if let Some(set) = self.by_capability.get_mut(&c.name) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.by_capability.remove(&c.name);
                    }
                }
            }
        }
    }

    fn upsert(&mut self, model: Model) {
        let id = model.id;
        let (running, allocated) = self
            .agents
            .get(&id)
            .map(|e| (e.running, e.allocated))
            .unwrap_or_default();
        self.remove(id);
        if model.deleted_at.is_some() {
            return;
        }
        let mut entry = AgentEntry::from_model(model);
        entry.running = running;
        entry.allocated = allocated;
        for c in &entry.capabilities {
            self.by_capability
                .entry(c.name.clone())
                .or_default()
                .insert(id);
        }
        self.agents.insert(id, entry);
    }
}

/// What to look for.
#[derive(Debug, Default, Clone)]
pub struct Query {
    /// All of these are required.
    pub capabilities: Vec<String>,
    pub agent_type: Option<AgentType>,
    pub status: Option<AgentStatus>,
    /// Only agents that can take work now (active or busy).
    pub healthy_only: bool,
    pub limit: usize,
}

#[derive(Debug)]
pub struct AgentDirectory {
    index: RwLock<Index>,
    sync: tokio::sync::Mutex<SyncState>,
    /// How long an entry may be served without being read again in full.
    ttl: Duration,
}

#[derive(Debug, Default)]
struct SyncState {
    /// When the last incremental pull started.
    pulled_at: Option<DateTime<Utc>>,
    /// When the index was last rebuilt from every row.
    rebuilt_at: Option<std::time::Instant>,
}

impl AgentDirectory {
    pub fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            index: RwLock::default(),
            sync: tokio::sync::Mutex::default(),
            ttl,
        })
    }

    /// Applies a row this replica just wrote.
    pub async fn upsert(&self, model: Model) {
        self.index.write().await.upsert(model);
    }

    pub async fn get(&self, id: Uuid) -> Option<AgentEntry> {
        self.index.read().await.agents.get(&id).cloned()
    }

    /// Matching agents, healthiest first, then least loaded, then by name.
    pub async fn discover(&self, q: &Query) -> Vec<AgentEntry> {
        let index = self.index.read().await;
        let matches = |e: &AgentEntry| {
            q.capabilities.iter().all(|c| e.has_capability(c))
                && q.agent_type.is_none_or(|t| e.agent_type == t)
                && q.status.is_none_or(|s| e.status == s)
                && (!q.healthy_only || e.status.is_healthy())
        };
        // Start from the smallest capability set, so the work is proportional to the candidates.
        let mut found: Vec<&AgentEntry> = if q.capabilities.is_empty() {
            index.agents.values().filter(|e| matches(e)).collect()
        } else {
            let smallest = q
                .capabilities
                .iter()
                .map(|c| index.by_capability.get(c))
                .min_by_key(|s| s.map_or(0, |s| s.len()));
            match smallest.flatten() {
                None => Vec::new(),
                Some(ids) => ids
                    .iter()
                    .filter_map(|id| index.agents.get(id))
                    .filter(|e| matches(e))
                    .collect(),
            }
        };
        let order = |a: &&AgentEntry, b: &&AgentEntry| {
            a.status
                .health_rank()
                .cmp(&b.status.health_rank())
                .then(a.load_ratio().total_cmp(&b.load_ratio()))
                .then_with(|| a.model.name.cmp(&b.model.name))
        };
        let limit = q.limit.max(1);
        if found.len() > limit {
            found.select_nth_unstable_by(limit - 1, order);
            found.truncate(limit);
        }
        found.sort_unstable_by(order);
        found.into_iter().cloned().collect()
    }

    /// Pulls changes from the database: changed rows (every row, once the TTL has passed since
    /// the last full read), then current loads.
    pub async fn sync(&self, db: &Database) -> mcp_shared::Result<()> {
        let mut state = self.sync.lock().await;
        let started = Utc::now();
        let rebuild = state.rebuilt_at.is_none_or(|at| at.elapsed() >= self.ttl);
        let since = match state.pulled_at {
            Some(t) if !rebuild => t - SYNC_OVERLAP,
            _ => DateTime::<Utc>::UNIX_EPOCH,
        };
        let changed = agents::changed_since(&db.conn, since).await?;
        let running = agents::running_counts(&db.conn).await?;
        let allocated = agents::allocated_slots(&db.conn).await?;
        let mut index = self.index.write().await;
        if rebuild {
            *index = Index::default();
            state.rebuilt_at = Some(std::time::Instant::now());
        }
        for model in changed {
            index.upsert(model);
        }
        for (id, entry) in index.agents.iter_mut() {
            entry.running = running.get(id).copied().unwrap_or(0);
            entry.allocated = allocated.get(id).copied().unwrap_or(0);
        }
        state.pulled_at = Some(started);
        Ok(())
    }

    /// Keeps syncing until shutdown.
    pub fn spawn_sync(self: &Arc<Self>, db: Database, shutdown: CancellationToken) {
        let me = self.clone();
        spawn_every(SYNC_INTERVAL, shutdown, move || {
            let (me, db) = (me.clone(), db.clone());
            async move {
                if let Err(e) = me.sync(&db).await {
                    tracing::warn!(error = %e, "agent directory sync failed");
                }
            }
        });
    }
}
