//! The capability catalog: built-ins plus operator-defined names.

use mcp_shared::{auth::Permission, domain::agent::BUILTIN_CAPABILITIES};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use serde::Deserialize;
use serde_json::json;

use super::{ApiTags, Envelope, ListEnvelope, ok, page};
use crate::{
    audit, auth::Auth, error::ApiResult, payload::ApiJson, services::capabilities as service,
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
    #[oai(
        path = "/capabilities",
        method = "get",
        operation_id = "listCapabilities"
    )]
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
        for c in service::defined(&state).await? {
            out.push(CapabilityEntry {
                name: c.name,
                description: c.description,
                builtin: false,
            });
        }
        Ok(CapabilityList::Ok(page(out, None)))
    }

    /// Add an operator-defined capability.
    #[oai(
        path = "/capabilities",
        method = "post",
        operation_id = "createCapability"
    )]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: ApiJson<CreateCapabilityRequest>,
    ) -> ApiResult<CapabilityCreated> {
        auth.0.require(Permission::AgentRegister)?;
        let r = body.0;
        let row = service::create(&state, r.name, r.description, auth.0.actor()).await?;
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
