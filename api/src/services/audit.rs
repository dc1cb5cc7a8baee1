//! Reading the audit trail: listing records, and walking the hash chain to find an edited or
//! deleted record. Writing it is the request middleware's (the audit log).

pub use mcp_shared::db::audit::{ListFilter, Verification};
use mcp_shared::{db::audit, entities::audit_records::Model};

use crate::{error::ApiError, state::AppState};

/// A page of records, oldest first.
pub async fn list(state: &AppState, filter: &ListFilter) -> Result<Vec<Model>, ApiError> {
    Ok(audit::list(&state.db.conn, filter).await?)
}

/// Recomputes every record's hash and link; a broken chain is logged as an error.
pub async fn verify(state: &AppState) -> Result<Verification, ApiError> {
    let v = audit::verify(&state.db.conn, &state.chain).await?;
    if !v.valid {
        tracing::error!(first_broken_id = ?v.first_broken_id, problem = ?v.problem, "audit chain verification failed");
    }
    Ok(v)
}
