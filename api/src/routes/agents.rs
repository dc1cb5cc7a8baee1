//! Agents: register, discover, read, heartbeat, capabilities, validate, metrics, allocate,
//! deregister. Agents authenticate with `Authorization: Agent <key>` and may act only on their
//! own record.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mcp_shared::{
    auth::Permission,
    domain::agent::{AgentStatus, AgentType},
};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{ApiTags, Envelope, ListEnvelope, ok, page};
use crate::{
    audit,
    auth::Auth,
    directory,
    error::{ApiError, ApiResult},
    payload::ApiJson,
    services::{
        agents::{self as service, Registration},
        capabilities, runs,
    },
    state::AppState,
    views::{self, AgentHealth, AgentView, TaskView},
};

pub struct AgentsApi;

#[derive(Object, Deserialize)]
pub struct RegisterAgentRequest {
    /// Unique among registered agents.
    pub name: String,
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub agent_type: AgentType,
    /// Names (`"validation"`) or `{"name": "validation", "version": "2"}`, from the catalog.
    pub capabilities: Vec<Value>,
    /// 1–10000, default 10.
    pub max_concurrency: Option<i64>,
    /// Free-form; personal data (emails, phone numbers, SSNs, card numbers) is redacted.
    pub metadata: Option<Value>,
    /// Agent configuration. `api_keys`, `credentials` and `secrets` are sealed and never returned.
    pub configuration: Option<Value>,
}

#[derive(Object)]
pub struct Registered {
    pub agent: AgentView,
    /// Shown once; store it now. Send it as `Authorization: Agent <key>`.
    pub agent_key: String,
}

#[derive(Object, Deserialize)]
pub struct HeartbeatRequest {
    /// Work the agent is doing that the platform does not see.
    pub current_load: Option<i32>,
    /// `active`, `busy` or `paused`.
    pub status: Option<AgentStatus>,
}

#[derive(Object)]
pub struct HeartbeatAck {
    pub agent_id: Uuid,
    pub status: AgentStatus,
    pub last_seen: DateTime<Utc>,
}

#[derive(Object, Deserialize)]
pub struct UpdateCapabilitiesRequest {
    pub capabilities: Vec<Value>,
    /// `replace` (default) or `add`.
    pub mode: Option<String>,
}

#[derive(Object)]
pub struct CapabilityCheck {
    pub capability: String,
    pub valid: bool,
    #[oai(skip_serializing_if_is_none)]
    pub reason: Option<String>,
}

#[derive(Object)]
pub struct Validation {
    pub valid: bool,
    pub results: Vec<CapabilityCheck>,
}

#[derive(Object)]
pub struct AgentMetrics {
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    /// Completed over finished; 1 when nothing has finished yet.
    pub success_rate: f64,
    pub avg_duration_ms: f64,
    pub p95_duration_ms: f64,
    pub current_load: i64,
    pub max_concurrency: i32,
}

#[derive(Object, Deserialize)]
pub struct AllocateRequest {
    /// 1..max_concurrency.
    pub slots: i64,
    /// 1–86400, default 60.
    pub ttl_seconds: Option<i64>,
    pub purpose: Option<String>,
}

#[derive(Object)]
pub struct Allocation {
    pub allocation_id: Uuid,
    pub agent_id: Uuid,
    pub slots: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Object)]
pub struct Deregistered {
    pub agent_id: Uuid,
    /// Unfinished tasks sent back to their queues.
    pub released_tasks: u64,
}

#[derive(ApiResponse)]
#[allow(clippy::large_enum_variant)] // built once per claim and returned at once
pub enum ClaimResponse {
    /// A task, now running on the agent.
    #[oai(status = 200)]
    Task(Json<Envelope<TaskView>>),
    /// Nothing arrived within `wait_ms`.
    #[oai(status = 204)]
    Nothing,
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    #[oai(status = 201)]
    Created(Json<Envelope<Registered>>),
}

#[derive(ApiResponse)]
pub enum AgentResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<AgentView>>),
}

#[derive(ApiResponse)]
pub enum AgentListResponse {
    #[oai(status = 200)]
    Ok(Json<ListEnvelope<AgentView>>),
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<AgentHealth>>),
}

#[derive(ApiResponse)]
pub enum HeartbeatResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<HeartbeatAck>>),
}

#[derive(ApiResponse)]
pub enum ValidateResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<Validation>>),
}

#[derive(ApiResponse)]
pub enum MetricsResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<AgentMetrics>>),
}

#[derive(ApiResponse)]
pub enum AllocateResponse {
    #[oai(status = 201)]
    Created(Json<Envelope<Allocation>>),
}

#[derive(ApiResponse)]
pub enum DeregisterResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<Deregistered>>),
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Agents")]
impl AgentsApi {
    /// Register an agent. The response carries its key, once.
    #[oai(
        path = "/agents/register",
        method = "post",
        operation_id = "registerAgent"
    )]
    async fn register(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: ApiJson<RegisterAgentRequest>,
    ) -> ApiResult<RegisterResponse> {
        auth.0.require(Permission::AgentRegister)?;
        let r = body.0;
        let reg = Registration {
            capabilities: capabilities::parse_capabilities(&r.capabilities, "capabilities")?,
            name: r.name,
            agent_type: r.agent_type,
            max_concurrency: r.max_concurrency.unwrap_or(10),
            metadata: r.metadata.unwrap_or_else(|| json!({})),
            configuration: r.configuration,
        };
        let (agent, key) = service::register(&state, reg).await?;
        audit::note(
            "agent.register",
            Some(agent.model.id.to_string()),
            Some(json!({"name": agent.model.name})),
        );
        Ok(RegisterResponse::Created(ok(Registered {
            agent: AgentView::of(&agent, &state.cipher),
            agent_key: key,
        })))
    }

    /// Agents with all the requested capabilities, healthy first, then least loaded.
    #[oai(
        path = "/agents/discover",
        method = "get",
        operation_id = "discoverAgents"
    )]
    async fn discover(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        capability: Query<Vec<String>>,
        #[oai(name = "type")] agent_type: Query<Option<AgentType>>,
        status: Query<Option<AgentStatus>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<AgentListResponse> {
        auth.0.require(Permission::AgentDiscover)?;
        let limit = views::limit(limit.0)? as usize;
        let found = service::discover(
            &state,
            &directory::Query {
                capabilities: capability.0,
                agent_type: agent_type.0,
                status: status.0,
                healthy_only: false,
                limit,
            },
        )
        .await;
        Ok(AgentListResponse::Ok(page(
            found
                .iter()
                .map(|e| AgentView::of(e, &state.cipher))
                .collect(),
            None,
        )))
    }

    /// One agent.
    #[oai(path = "/agents/:id", method = "get", operation_id = "getAgent")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<AgentResponse> {
        auth.0.require(Permission::AgentBasic)?;
        auth.0.require_self_if_agent(id.0)?;
        Ok(AgentResponse::Ok(ok(AgentView::of(
            &service::find(&state, id.0).await?,
            &state.cipher,
        ))))
    }

    /// Liveness and availability of one agent.
    #[oai(
        path = "/agents/:id/health",
        method = "get",
        operation_id = "getAgentHealth"
    )]
    async fn health(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<HealthResponse> {
        auth.0.require(Permission::AgentBasic)?;
        auth.0.require_self_if_agent(id.0)?;
        Ok(HealthResponse::Ok(ok(service::health(&state, id.0).await?)))
    }

    /// The agent reports it is alive (only the agent itself).
    #[oai(
        path = "/agents/:id/heartbeat",
        method = "post",
        operation_id = "sendAgentHeartbeat"
    )]
    async fn heartbeat(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: ApiJson<HeartbeatRequest>,
    ) -> ApiResult<HeartbeatResponse> {
        auth.0.require(Permission::AgentBasic)?;
        if auth.0.agent_id() != Some(id.0) {
            // Existence is not revealed to callers who may not beat for it.
            return Err(ApiError::forbidden(
                "only the agent itself sends its heartbeats",
            ));
        }
        let r = body.0;
        let (agent, status) = service::heartbeat(&state, id.0, r.current_load, r.status).await?;
        Ok(HeartbeatResponse::Ok(ok(HeartbeatAck {
            agent_id: id.0,
            status,
            last_seen: agent.last_seen,
        })))
    }

    /// Replace or add capabilities (validated against the catalog). Needs `agent.register`; an
    /// agent may only narrow its own (403 for one it does not hold).
    #[oai(
        path = "/agents/:id/capabilities",
        method = "post",
        operation_id = "setAgentCapabilities"
    )]
    async fn capabilities(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: ApiJson<UpdateCapabilitiesRequest>,
    ) -> ApiResult<AgentResponse> {
        if auth.0.agent_id().is_none() {
            auth.0.require(Permission::AgentRegister)?;
        }
        auth.0.require_self_if_agent(id.0)?;
        let r = body.0;
        let incoming = capabilities::parse_capabilities(&r.capabilities, "capabilities")?;
        let add = match r.mode.as_deref() {
            None | Some("replace") => false,
            Some("add") => true,
            Some(_) => {
                return Err(ApiError::invalid_field(
                    "mode",
                    "mode must be replace or add",
                ));
            }
        };
        let narrow_only = auth.0.agent_id().is_some();
        let agent = service::set_capabilities(&state, id.0, incoming, add, narrow_only).await?;
        audit::note(
            "agent.capabilities",
            Some(id.0.to_string()),
            Some(json!({"capabilities": agent.capabilities})),
        );
        Ok(AgentResponse::Ok(ok(AgentView::of(&agent, &state.cipher))))
    }

    /// Check the agent's capabilities against the catalog.
    #[oai(
        path = "/agents/:id/validate",
        method = "post",
        operation_id = "validateAgent"
    )]
    async fn validate(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<ValidateResponse> {
        auth.0.require(Permission::AgentBasic)?;
        auth.0.require_self_if_agent(id.0)?;
        let results: Vec<CapabilityCheck> = service::check_capabilities(&state, id.0)
            .await?
            .into_iter()
            .map(|(capability, valid)| CapabilityCheck {
                capability,
                valid,
                reason: (!valid).then(|| "not in the capability catalog".to_string()),
            })
            .collect();
        Ok(ValidateResponse::Ok(ok(Validation {
            valid: results.iter().all(|r| r.valid),
            results,
        })))
    }

    /// Task statistics of one agent.
    #[oai(
        path = "/agents/:id/metrics",
        method = "get",
        operation_id = "getAgentMetrics"
    )]
    async fn metrics(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<MetricsResponse> {
        auth.0.require(Permission::AgentBasic)?;
        auth.0.require_self_if_agent(id.0)?;
        let (e, stats) = service::task_stats(&state, id.0).await?;
        let mut d = stats.recent_durations_ms;
        d.sort_unstable();
        let finished = stats.completed + stats.failed;
        Ok(MetricsResponse::Ok(ok(AgentMetrics {
            tasks_completed: stats.completed,
            tasks_failed: stats.failed,
            success_rate: if finished == 0 {
                1.0
            } else {
                stats.completed as f64 / finished as f64
            },
            avg_duration_ms: if d.is_empty() {
                0.0
            } else {
                d.iter().sum::<i64>() as f64 / d.len() as f64
            },
            p95_duration_ms: percentile(&d, 0.95),
            current_load: e.load(),
            max_concurrency: e.model.max_concurrency,
        })))
    }

    /// Reserve slots on an agent for a while; they count as load until they expire.
    #[oai(
        path = "/agents/:id/allocate",
        method = "post",
        operation_id = "allocateAgentSlots"
    )]
    async fn allocate(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: ApiJson<AllocateRequest>,
    ) -> ApiResult<AllocateResponse> {
        auth.0.require(Permission::TaskAssign)?;
        let r = body.0;
        let a = service::allocate(&state, id.0, r.slots, r.ttl_seconds, r.purpose).await?;
        audit::note(
            "agent.allocate",
            Some(id.0.to_string()),
            Some(json!({"slots": r.slots, "ttl_seconds": a.ttl_seconds})),
        );
        Ok(AllocateResponse::Created(ok(Allocation {
            allocation_id: a.id,
            agent_id: id.0,
            slots: r.slots,
            expires_at: a.expires_at,
        })))
    }

    /// The agent takes its next task: one assigned to it, else the most urgent due task in its
    /// capabilities' queues. Waits up to `wait_ms` (≤ 30000) and answers as soon as one is routed.
    #[oai(
        path = "/agents/:id/tasks/claim",
        method = "post",
        operation_id = "claimTask"
    )]
    async fn claim(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        wait_ms: Query<Option<u64>>,
    ) -> ApiResult<ClaimResponse> {
        auth.0.require(Permission::TaskReport)?;
        if auth.0.agent_id() != Some(id.0) {
            return Err(ApiError::forbidden(
                "only the agent itself claims its tasks",
            ));
        }
        let wait = wait_ms.0.unwrap_or(0);
        if wait > 30_000 {
            return Err(ApiError::invalid_field(
                "wait_ms",
                "wait_ms is at most 30000",
            ));
        }
        match runs::claim_waiting(&state, id.0, Duration::from_millis(wait)).await? {
            Some(task) => Ok(ClaimResponse::Task(ok(TaskView::for_runner(
                task,
                &state.cipher,
            )?))),
            None => Ok(ClaimResponse::Nothing),
        }
    }

    /// Deregister: the key stops working at once; claimed, unfinished tasks go back to their queues.
    #[oai(
        path = "/agents/:id",
        method = "delete",
        operation_id = "deregisterAgent"
    )]
    async fn deregister(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<DeregisterResponse> {
        if auth.0.agent_id().is_none() {
            auth.0.require(Permission::AgentRegister)?;
        }
        auth.0.require_self_if_agent(id.0)?;
        let released = service::deregister(&state, id.0).await?;
        audit::note(
            "agent.deregister",
            Some(id.0.to_string()),
            Some(json!({"released_tasks": released})),
        );
        Ok(DeregisterResponse::Ok(ok(Deregistered {
            agent_id: id.0,
            released_tasks: released as u64,
        })))
    }
}
