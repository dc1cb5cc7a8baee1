//! The TechDeck MCP HTTP and WebSocket API.
//!
//! # Layout
//! Four layers. A module imports from its own layer's earlier modules and from the layers
//! below, never from a layer above, and no modules import each other in a circle.
//!
//! 1. Foundations: each builds on [`mcp_shared`] and on the foundations listed before it; none
//!    imports the state, a service or a handler.
//!    - [`error`]: the one error type, its closed table of codes, and the envelope.
//!    - [`templates`]: the route templates (`/api/v1/tasks/{id}`), built once at start.
//!    - [`principal`]: who is calling and what they may do.
//!    - [`views`]: the response shapes that several handlers and services share (a task, a
//!      queue, a stage), and paging.
//!    - [`audit`]: the audit log (group-committed, hash-chained) and the note a handler adds to
//!      its request's record.
//!    - [`directory`]: registered agents, indexed for discovery; [`dispatcher`]: feeds due tasks
//!      to their queues.
//!    - [`security`]: rate limits, login lockout, token revocation, shared across replicas.
//!    - [`observability`]: metrics, the request window and the state of alerts;
//!      [`connections`]: open WebSocket connections.
//!    - [`slow_clients`]: read timeouts for request heads and bodies; [`middleware`]: request
//!      ids, body limit, audit records, the error envelope for everything.
//!    - [`dashboard`]: the operator page at `/dashboard`, a client of the API like any other.
//! 2. [`state`]: the components above, built once, gathered into what services work on. The
//!    state holds them; none of them holds or imports the state.
//! 3. [`services`]: the logic, free of HTTP. Every database call and every event of the API
//!    goes through a service, except the background work three foundations do on their own
//!    (the directory's sync, the dispatcher's pushes and releases, the audit log's writes). A
//!    service may call another, never in a circle (`runs` → `agents` → `capabilities`). Task
//!    transitions are [`mcp_shared::lifecycle`]'s: the task services only call it.
//! 4. The request edge: [`auth`] (the security scheme, resolving credentials through the
//!    sessions service) and [`payload`] (JSON bodies with 400/422/413; the per-type task payload
//!    and result schemas are [`task_schemas`]); then the handlers,
//!    [`routes`] (one module per resource, plus `/metrics`) and [`ws`] (WebSocket channels). A
//!    handler holds the request and response shapes, the permission check and the service call,
//!    and names the audit action. Handlers never import each other: what two share is in
//!    [`routes`] itself or in [`views`].
//!
//! On top, [`startup`] builds each component with what it needs and wires the server, and
//! [`cli`] runs the `mcp-api` commands.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod connections;
pub mod dashboard;
pub mod directory;
pub mod dispatcher;
pub mod error;
pub mod mcp;
pub mod middleware;
pub mod observability;
pub mod payload;
pub mod principal;
pub mod routes;
pub mod security;
pub mod services;
pub mod slow_clients;
pub mod startup;
pub mod state;
pub mod task_schemas;
pub mod templates;
pub mod views;
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
