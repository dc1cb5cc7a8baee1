//! Black-box tests of TechDeck MCP: real servers, real binaries, HTTP and WebSocket only.
//!
//! Each test starts what it needs on free loopback ports in its own temp dir (see [`helpers`]),
//! and waits by polling with a deadline, never by sleeping.

mod helpers;

mod agents;
mod auth;
mod canary;
mod dashboard;
mod deployment;
mod docs;
mod engine;
mod errors;
mod fuzz;
mod mcpctl;
mod observability;
mod pipeline;
mod rbac;
mod realtime;
mod security;
mod tasks;
