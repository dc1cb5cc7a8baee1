//! Application services: the logic behind the routes, free of HTTP concerns.

pub mod agents;
pub mod audit;
pub mod datasets;
pub mod dispatcher;
pub mod keys;
pub mod pipelines;
pub mod retention;
pub mod tasks;

/// A keyed fingerprint of a request's content, for idempotency: stored, it cannot be used to
/// guess the content (a plain hash of a small secret, an SSN say, could be reversed).
pub fn keyed_fingerprint(state: &crate::state::AppState, canonical: &serde_json::Value) -> String {
    mcp_shared::crypto::keyed_hash(
        &mcp_shared::crypto::derive_key(state.settings.secret_key.expose(), "request-fingerprints"),
        canonical.to_string().as_bytes(),
    )
}
