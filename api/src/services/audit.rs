//! Writing audit records for mutations and security events.

use mcp_shared::db::audit::{self, AuditEntry};
use serde_json::Value;

use crate::{auth::Principal, error::current_request_id, state::AppState};

/// Records a security event with no authenticated actor (a failed login, say).
pub async fn record_anonymous(
    state: &AppState,
    actor: &str,
    action: &str,
    outcome: &str,
    details: Option<Value>,
) {
    let entry = AuditEntry {
        actor: actor.to_string(),
        action: action.to_string(),
        target: None,
        outcome: outcome.to_string(),
        request_id: Some(current_request_id()).filter(|r| !r.is_empty()),
        details,
    };
    if let Err(e) = audit::append(&state.db, entry).await {
        tracing::error!(error = %e, action, "audit record not written");
    }
}

/// Records an action. An audit failure is logged loudly but does not undo the action it records.
pub async fn record(
    state: &AppState,
    actor: &Principal,
    action: &str,
    target: Option<String>,
    outcome: &str,
    details: Option<Value>,
) {
    let entry = AuditEntry {
        actor: actor.actor(),
        action: action.to_string(),
        target,
        outcome: outcome.to_string(),
        request_id: Some(current_request_id()).filter(|r| !r.is_empty()),
        details,
    };
    if let Err(e) = audit::append(&state.db, entry).await {
        tracing::error!(error = %e, action, "audit record not written");
    }
}
