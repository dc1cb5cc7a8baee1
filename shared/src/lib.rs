//! The domain every TechDeck MCP binary agrees on.
//!
//! # Layout
//! Five lines, from the bottom up. A module uses modules of the lines above its own and, within
//! its line, those listed before it; never one listed after it, so no modules use each other in
//! a circle.
//! 1. Values: [`entities`] (sea-orm entities, one per table), [`pii`] (personal data found and
//!    redacted: the validation stage, agent metadata), the types of [`domain`] (task, priority,
//!    agent, stage), [`error`] (the crate's error type).
//! 2. Tools: [`crypto`] (argon2 passwords, keyed hashes, random tokens, the AES-256-GCM key
//!    ring), [`sealing`] (sensitive JSON fields sealed in place), [`config`] (typed settings,
//!    loaded once from the environment; secrets wrapped so they cannot be printed), [`auth`]
//!    (roles, permissions and JWT claims), [`sanitize`] (what log output must not carry:
//!    credentials, then the same PII), [`telemetry`] (one tracing setup for every binary, JSON
//!    logs in production, every line sanitised), [`otlp`] (trace export), [`shutdown`] (the
//!    stop signal, and periodic work that stops with it).
//! 3. Events and the three seams: [`domain::event`] (events, built from entity rows with sealed
//!    fields masked), [`queue`] (where jobs wait; explicit queue names), [`bus`] (where events
//!    travel), [`artifacts`] (where data lives; sealed as it is stored, in the chunked format of
//!    [`sealed_stream`]).
//! 4. [`db`]: connecting, and the queries that read and change state, one module per table
//!    family.
//! 5. [`lifecycle`]: every task transition, decided and published in one place (where a task
//!    starts, completes, is retried or becomes dead).
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
pub mod sealed_stream;
pub mod sealing;
pub mod shutdown;
pub mod telemetry;

pub use config::Settings;

/// Every binary allocates through mimalloc: the engine allocates and frees small objects at a
/// high rate from many threads, where the system allocator spent more time than the work.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
pub use error::{Error, Result};

/// The version reported by `/api/v1/health` and the binaries' `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
