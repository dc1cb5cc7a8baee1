//! Black-box tests of TechDeck MCP: real servers, real binaries, HTTP and WebSocket only.
//!
//! Each test starts what it needs on loopback in its own temp dir (see [`helpers`]): our own
//! binaries bind port 0 and report the port they got (`MCP_PORT_FILE`); redis-server and
//! PostgreSQL take a port picked free. Tests wait for a condition by polling or reading with a
//! deadline ([`helpers::wait`]), never by sleeping; a sleep is left only where time passing is
//! what is tested (a lockout running out, a client idling past a timeout).

mod helpers;

mod agents;
mod assignment;
mod auth;
mod builtin_tasks;
mod canary;
mod dashboard;
mod deployment;
mod docs;
mod engine;
mod errors;
mod fuzz;
mod mcp;
mod mcpctl;
mod observability;
mod pipeline;
mod rbac;
mod realtime;
mod schedules;
mod security;
mod tasks;
mod unserved;
