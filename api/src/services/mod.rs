//! Application services: the logic behind the routes, free of HTTP concerns. They own every
//! database call and every event the API publishes; each takes the [`AppState`] it works on.

pub mod agents;
pub mod assignments;
pub mod audit;
pub mod capabilities;
pub mod datasets;
pub mod events;
pub mod keys;
pub mod monitoring;
pub mod pipelines;
pub mod queues;
pub mod retention;
pub mod runs;
pub mod schedules;
pub mod sessions;
pub mod shards;
pub mod staging;
pub mod tasks;
pub mod users;

use crate::state::AppState;

/// A keyed fingerprint of a request's content, for idempotency: stored, it cannot be used to
/// guess the content (a plain hash of a small secret, an SSN say, could be reversed).
pub fn keyed_fingerprint(state: &AppState, canonical: &serde_json::Value) -> String {
    mcp_shared::crypto::keyed_hash(
        &mcp_shared::crypto::derive_key(state.settings.secret_key.expose(), "request-fingerprints"),
        canonical.to_string().as_bytes(),
    )
}
