//! The audit trail (admin): listing with filters, and verifying the hash chain.

use chrono::{DateTime, Utc};
use mcp_shared::{auth::Permission, entities::audit_records};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Query, payload::Json};
use serde_json::Value;

use super::{ApiTags, Envelope, ListEnvelope, ok, page};
use crate::{
    auth::Auth,
    error::ApiResult,
    services::audit::{self as service, ListFilter},
    state::AppState,
    views,
};

pub struct AuditApi;

/// One audited action or security event. `hash` covers the record and `prev_hash`.
#[derive(Object)]
pub struct AuditRecordView {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    /// `role:name` of the caller, `user:<name>` for a login attempt, or `anonymous`.
    pub actor: String,
    /// A domain action (`task.create`, `auth.login`, `keys.rotate`…), a security event
    /// (`security.unauthenticated`, `security.forbidden`, `security.rate_limited`…), or
    /// `METHOD /route/{id}` for other mutating requests.
    pub action: String,
    #[oai(skip_serializing_if_is_none)]
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    #[oai(skip_serializing_if_is_none)]
    pub request_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub details: Option<Value>,
    pub prev_hash: String,
    pub hash: String,
}

impl From<audit_records::Model> for AuditRecordView {
    fn from(r: audit_records::Model) -> Self {
        Self {
            id: r.id,
            occurred_at: r.occurred_at,
            actor: r.actor,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            request_id: r.request_id,
            details: r.details,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

/// The result of walking the chain.
#[derive(Object)]
pub struct AuditVerification {
    pub valid: bool,
    pub records_checked: u64,
    /// The first record that was edited, forged, or that follows a deleted one; after a
    /// truncation, the id the published head names.
    #[oai(skip_serializing_if_is_none)]
    pub first_broken_id: Option<i64>,
    /// What is wrong, when the chain is not valid.
    #[oai(skip_serializing_if_is_none)]
    pub problem: Option<String>,
}

#[derive(ApiResponse)]
pub enum AuditListResponse {
    #[oai(status = 200)]
    Ok(Json<ListEnvelope<AuditRecordView>>),
}

#[derive(ApiResponse)]
pub enum AuditVerifyResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<AuditVerification>>),
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::System")]
impl AuditApi {
    /// Audit records, oldest first, filtered; page with `cursor`. `action` may end in `*` to
    /// select a family (`task.*`).
    #[oai(path = "/audit", method = "get", operation_id = "listAuditRecords")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        actor: Query<Option<String>>,
        action: Query<Option<String>>,
        outcome: Query<Option<String>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<AuditListResponse> {
        auth.0.require(Permission::AuditRead)?;
        let after = views::cursor(cursor.0.as_deref())?;
        let limit = views::limit(limit.0)?;
        let filter = ListFilter {
            actor: actor.0,
            action: action.0,
            outcome: outcome.0,
            since: since.0,
            until: until.0,
            after,
            limit,
        };
        let rows = service::list(&state, &filter).await?;
        let next = views::next_cursor(&rows, limit, |r| r.id.to_string());
        Ok(AuditListResponse::Ok(page(
            rows.into_iter().map(AuditRecordView::from).collect(),
            next,
        )))
    }

    /// Recompute every record's hash, link and MAC, and find the published head in the chain:
    /// detects an edited, forged or deleted record and a truncated trail.
    #[oai(
        path = "/audit/verify",
        method = "get",
        operation_id = "verifyAuditTrail"
    )]
    async fn verify(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<AuditVerifyResponse> {
        auth.0.require(Permission::AuditRead)?;
        let v = service::verify(&state).await?;
        Ok(AuditVerifyResponse::Ok(ok(AuditVerification {
            valid: v.valid,
            records_checked: v.records_checked,
            first_broken_id: v.first_broken_id,
            problem: v.problem,
        })))
    }
}
