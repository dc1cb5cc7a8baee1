//! Recurring schedules: create, list, read, change (pause and resume too), delete, and the
//! history of their occurrences.

use chrono::{DateTime, Utc};
use mcp_shared::{
    auth::Permission,
    entities::{schedule_runs, schedules::Model},
};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use serde_json::json;
use uuid::Uuid;

use super::{ApiTags, Envelope, ListEnvelope, ok, page};
use crate::{
    audit,
    auth::Auth,
    error::ApiResult,
    payload::ApiJson,
    services::schedules::{self as service, CreateScheduleRequest, UpdateScheduleRequest},
    state::AppState,
    views,
};

pub struct SchedulesApi;

#[derive(Object)]
pub struct ScheduleView {
    pub id: Uuid,
    pub name: String,
    #[oai(skip_serializing_if_is_none)]
    pub cron: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub interval_seconds: Option<u32>,
    pub start_at: DateTime<Utc>,
    pub time_zone: String,
    /// `task` or `pipeline`.
    pub template_kind: String,
    /// The task or pipeline request each occurrence sends.
    pub template: serde_json::Value,
    pub overlap_policy: String,
    pub catch_up_policy: String,
    pub paused: bool,
    /// The next occurrences (none while paused).
    pub next_run_times: Vec<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Model> for ScheduleView {
    fn from(m: Model) -> Self {
        Self {
            next_run_times: service::upcoming(&m, service::UPCOMING),
            id: m.id,
            name: m.name,
            cron: m.cron,
            interval_seconds: m.interval_seconds.map(|s| s.max(0) as u32),
            start_at: m.start_at,
            time_zone: m.time_zone,
            template_kind: m.template_kind,
            template: m.template,
            overlap_policy: m.overlap_policy,
            catch_up_policy: m.catch_up_policy,
            paused: m.paused,
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// One occurrence of a schedule.
#[derive(Object)]
pub struct ScheduleRunView {
    pub occurrence_at: DateTime<Utc>,
    /// `firing`, `fired`, `skipped` (the previous one was still running), `missed` (fell while
    /// the service was down, and the catch-up policy did not run it), `failed` (`error` says why).
    pub outcome: String,
    #[oai(skip_serializing_if_is_none)]
    pub task_id: Option<Uuid>,
    #[oai(skip_serializing_if_is_none)]
    pub execution_id: Option<Uuid>,
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    pub fired_at: DateTime<Utc>,
}

impl From<schedule_runs::Model> for ScheduleRunView {
    fn from(r: schedule_runs::Model) -> Self {
        Self {
            occurrence_at: r.occurrence_at,
            outcome: r.outcome,
            task_id: r.task_id,
            execution_id: r.execution_id,
            error: r.error,
            fired_at: r.fired_at,
        }
    }
}

#[derive(Object)]
pub struct ScheduleDeleted {
    pub id: Uuid,
}

#[derive(ApiResponse)]
pub enum CreateScheduleResponse {
    #[oai(status = 201)]
    Created(Json<Envelope<ScheduleView>>),
}

#[derive(ApiResponse)]
pub enum ScheduleResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<ScheduleView>>),
}

#[derive(ApiResponse)]
pub enum ScheduleListResponse {
    #[oai(status = 200)]
    Ok(Json<ListEnvelope<ScheduleView>>),
}

#[derive(ApiResponse)]
pub enum ScheduleRunsResponse {
    #[oai(status = 200)]
    Ok(Json<ListEnvelope<ScheduleRunView>>),
}

#[derive(ApiResponse)]
pub enum ScheduleDeletedResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<ScheduleDeleted>>),
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Schedules")]
impl SchedulesApi {
    /// Create a recurring schedule. Each occurrence starts the template's task or pipeline
    /// execution once, whatever the number of API replicas, as the user who created it.
    #[oai(path = "/schedules", method = "post", operation_id = "createSchedule")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: ApiJson<CreateScheduleRequest>,
    ) -> ApiResult<CreateScheduleResponse> {
        auth.0.require(Permission::ScheduleManage)?;
        let row = service::create(&state, body.0, &auth.0).await?;
        audit::note(
            "schedule.create",
            Some(row.id.to_string()),
            Some(json!({"name": row.name, "template_kind": row.template_kind})),
        );
        Ok(CreateScheduleResponse::Created(ok(row.into())))
    }

    /// List schedules, newest first; page with `cursor`.
    #[oai(path = "/schedules", method = "get", operation_id = "listSchedules")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<ScheduleListResponse> {
        auth.0.require(Permission::ScheduleRead)?;
        let after = views::cursor(cursor.0.as_deref())?;
        let limit = views::limit(limit.0)?;
        let rows = service::list(&state, after, limit).await?;
        let next = views::next_cursor(&rows, limit, |s| s.id.to_string());
        Ok(ScheduleListResponse::Ok(page(
            rows.into_iter().map(Into::into).collect(),
            next,
        )))
    }

    /// One schedule, with its next run times.
    #[oai(path = "/schedules/:id", method = "get", operation_id = "getSchedule")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<ScheduleResponse> {
        auth.0.require(Permission::ScheduleRead)?;
        Ok(ScheduleResponse::Ok(ok(service::find(&state, id.0)
            .await?
            .into())))
    }

    /// Change a schedule's name, timing or policies, or pause (`paused: true`) and resume it.
    #[oai(
        path = "/schedules/:id",
        method = "patch",
        operation_id = "updateSchedule"
    )]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        body: ApiJson<UpdateScheduleRequest>,
    ) -> ApiResult<ScheduleResponse> {
        auth.0.require(Permission::ScheduleManage)?;
        let row = service::update(&state, id.0, body.0).await?;
        audit::note(
            "schedule.update",
            Some(row.id.to_string()),
            Some(json!({"paused": row.paused})),
        );
        Ok(ScheduleResponse::Ok(ok(row.into())))
    }

    /// Delete a schedule and its history. Tasks and executions it started are kept.
    #[oai(
        path = "/schedules/:id",
        method = "delete",
        operation_id = "deleteSchedule"
    )]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<ScheduleDeletedResponse> {
        auth.0.require(Permission::ScheduleManage)?;
        service::delete(&state, id.0).await?;
        audit::note("schedule.delete", Some(id.0.to_string()), None);
        Ok(ScheduleDeletedResponse::Ok(ok(ScheduleDeleted {
            id: id.0,
        })))
    }

    /// A schedule's occurrences, latest first: when each fell and what it started, or why not.
    /// Page with `cursor`.
    #[oai(
        path = "/schedules/:id/runs",
        method = "get",
        operation_id = "listScheduleRuns"
    )]
    async fn runs(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        id: Path<Uuid>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<ScheduleRunsResponse> {
        auth.0.require(Permission::ScheduleRead)?;
        let before = views::cursor::<DateTime<Utc>>(cursor.0.as_deref())?;
        let limit = views::limit(limit.0)?;
        let rows = service::runs(&state, id.0, before, limit).await?;
        let next = views::next_cursor(&rows, limit, |r| r.occurrence_at.to_rfc3339());
        Ok(ScheduleRunsResponse::Ok(page(
            rows.into_iter().map(Into::into).collect(),
            next,
        )))
    }
}
