//! Black-box tests of TechDeck MCP: real servers, real binaries, HTTP and WebSocket only.
//!
//! Each test starts what it needs on free loopback ports in its own temp dir (see [`helpers`]),
//! and waits by polling with a deadline, never by sleeping.

mod helpers;

mod agents;
mod auth;
mod canary;
mod deployment;
mod engine;
mod errors;
mod mcpctl;
mod pipeline;
mod realtime;
mod tasks;
