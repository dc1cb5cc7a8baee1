//! The domain every TechDeck MCP binary agrees on.
//!
//! # Layout
//! - [`config`]: typed settings, loaded once from the environment; secrets wrapped so they cannot be printed.
//! - [`error`]: the crate's error type.
//! - [`telemetry`]: one tracing setup for every binary (JSON logs in production), every line
//!   sanitised by [`sanitize::sanitize`] so no personal data or credential is written out.
//!   [`otlp`]: trace export.
//! - [`pii`]: personal data found and redacted (the validation stage, agent metadata);
//!   [`sanitize`]: what log output must not carry (credentials, then the same PII).
//! - [`crypto`]: argon2 password hashing, keyed hashes and random tokens.
//! - [`auth`]: roles, permissions and JWT claims.
//! - [`domain`]: task, priority and event types shared by the API and the workers.
//! - [`entities`]: sea-orm entities, one per table; [`db`]: connecting and the queries that change state.
//! - The three seams: [`queue`] (where jobs wait), [`bus`] (where events travel), [`artifacts`] (where data lives).
//!
//! # The data path
//! An API request creates a task row (the source of truth for its state) and pushes a small job
//! reference onto the queue `mcp:{capability}:{tier}`. A worker with that capability pulls it,
//! moves the row `pending → running → completed` with conditional updates (so a duplicate delivery
//! changes nothing), and publishes each transition on the event bus, from which the API fans
//! events out to WebSocket subscribers.

pub mod artifacts;
pub mod auth;
pub mod bus;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod entities;
pub mod error;
pub mod lifecycle;
pub mod otlp;
pub mod pii;
pub mod queue;
pub mod sanitize;
pub mod sealing;
pub mod shutdown;
pub mod telemetry;

pub use config::Settings;
pub use error::{Error, Result};

/// The version reported by `/api/v1/health` and the binaries' `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
