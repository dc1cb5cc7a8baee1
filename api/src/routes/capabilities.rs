//! The capability catalog: built-ins plus operator-defined names.

use chrono::Utc;
use mcp_shared::{auth::Permission, domain::agent::BUILTIN_CAPABILITIES, entities::capabilities};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde::Deserialize;
use serde_json::json;

use super::{ApiTags, Envelope, ListEnvelope, ok, page};
use crate::{
    auth::Auth,
    error::{ApiError, ApiResult, ErrorCode},
    payload::ApiJson,
    services::{audit, tasks::valid_capability},
    state::AppState,
};

pub struct CapabilitiesApi;

#[derive(Object, Deserialize)]
pub struct CreateCapabilityRequest {
    /// Lowercase letters, digits and `_`, 1–64 characters.
    pub name: String,
    pub description: Option<String>,
}

#[derive(Object)]
pub struct CapabilityEntry {
    pub name: String,
    #[oai(skip_serializing_if_is_none)]
    pub description: Option<String>,
    /// True for the built-in catalog.
    pub builtin: bool,
}

#[derive(ApiResponse)]
pub enum CapabilityCreated {
    #[oai(status = 201)]
    Created(Json<Envelope<CapabilityEntry>>),
}

#[derive(ApiResponse)]
pub enum CapabilityList {
    #[oai(status = 200)]
    Ok(Json<ListEnvelope<CapabilityEntry>>),
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Agents")]
impl CapabilitiesApi {
    /// The capability catalog.
    #[oai(path = "/capabilities", method = "get")]
    async fn list(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<CapabilityList> {
        auth.0.require(Permission::AgentDiscover)?;
        let mut out: Vec<CapabilityEntry> = BUILTIN_CAPABILITIES
            .iter()
            .map(|n| CapabilityEntry {
                name: n.to_string(),
                description: None,
                builtin: true,
            })
            .collect();
        for c in capabilities::Entity::find()
            .all(&state.db.conn)
            .await
            .map_err(mcp_shared::Error::from)?
        {
            out.push(CapabilityEntry {
                name: c.name,
                description: c.description,
                builtin: false,
            });
        }
        Ok(CapabilityList::Ok(page(out, None)))
    }

    /// Add an operator-defined capability.
    #[oai(path = "/capabilities", method = "post")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: ApiJson<CreateCapabilityRequest>,
    ) -> ApiResult<CapabilityCreated> {
        auth.0.require(Permission::AgentRegister)?;
        let r = body.0;
        if !valid_capability(&r.name) {
            return Err(ApiError::invalid_field(
                "name",
                "name must be 1-64 lowercase letters, digits or '_'",
            ));
        }
        if r.description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 1000)
        {
            return Err(ApiError::invalid_field(
                "description",
                "description is at most 1000 characters",
            ));
        }
        let exists = BUILTIN_CAPABILITIES.contains(&r.name.as_str())
            || capabilities::Entity::find_by_id(r.name.clone())
                .one(&state.db.conn)
                .await
                .map_err(mcp_shared::Error::from)?
                .is_some();
        if exists {
            return Err(ApiError::new(
                ErrorCode::CapabilityExists,
                format!("capability {:?} already exists", r.name),
            ));
        }
        let row = capabilities::ActiveModel {
            name: Set(r.name.clone()),
            description: Set(r.description.clone()),
            created_by: Set(Some(auth.0.actor())),
            created_at: Set(Utc::now()),
        }
        .insert(&state.db.conn)
        .await
        .map_err(|e| {
            if mcp_shared::db::users::is_unique_violation(&e) {
                ApiError::new(ErrorCode::CapabilityExists, "capability already exists")
            } else {
                mcp_shared::Error::from(e).into()
            }
        })?;
        audit::note(
            "capability.create",
            Some(row.name.clone()),
            Some(json!({"description": row.description})),
        );
        Ok(CapabilityCreated::Created(ok(CapabilityEntry {
            name: row.name,
            description: row.description,
            builtin: false,
        })))
    }
}
