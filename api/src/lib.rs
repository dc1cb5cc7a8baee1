//! The TechDeck MCP HTTP and WebSocket API.
//!
//! # Layout
//! - [`cli`]: the `mcp-api` commands; [`startup`]: wiring settings into a running server.
//! - [`state`]: what handlers reach. [`auth`]: who is calling and may they.
//! - [`middleware`]: request ids, body limit, audit records, the error envelope for everything.
//! - [`slow_clients`]: read timeouts for request heads and bodies.
//! - [`security`]: rate limits, login lockout, token revocation, shared across replicas.
//! - [`error`]: the one error type and its envelope; [`payload`]: JSON bodies with 400/422/413.
//! - [`routes`]: one module per resource; [`services`]: the logic behind them.
//! - [`ws`]: WebSocket channels fed by the event bus.
//! - [`dashboard`]: the operator page at `/dashboard`, a client of the API like any other.
//! - [`observability`]: `/metrics`, the request window behind `/system/health`, alerts.

pub mod auth;
pub mod cli;
pub mod dashboard;
pub mod directory;
pub mod error;
pub mod middleware;
pub mod observability;
pub mod payload;
pub mod routes;
pub mod security;
pub mod services;
pub mod slow_clients;
pub mod startup;
pub mod state;
pub mod ws;

#[cfg(test)]
mod tests {
    /// The committed spec must match the code. Regenerate with
    /// `cargo run -p mcp-api -- openapi > openapi/openapi.json`.
    #[test]
    fn openapi_document_is_committed_and_current() {
        let committed = include_str!("../../openapi/openapi.json");
        let generated = crate::startup::openapi_json();
        assert!(
            committed == generated,
            "openapi/openapi.json is out of date: run `cargo run -p mcp-api -- openapi > openapi/openapi.json`"
        );
    }
}
