//! The error type of the shared crate. Callers decide how each kind reaches a user; the API maps
//! them once to its HTTP envelope.

use crate::domain::task::TaskStatus;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing or malformed; the message names the variable.
    #[error("configuration error: {0}")]
    Config(String),
    #[error("database error")]
    Database(#[from] sea_orm::DbErr),
    #[error("queue backend error: {0}")]
    Queue(String),
    #[error("event bus error: {0}")]
    Bus(String),
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A state transition that the current state forbids.
    #[error("task is {current}, which does not allow this")]
    IllegalTransition { current: TaskStatus },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid credentials")]
    Unauthorized(String),
    #[error("crypto error: {0}")]
    Crypto(String),
    #[error("artifact store error: {0}")]
    Artifact(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("serialization error: {0}")]
    Serde(#[from] serde_json::Error),
}

impl Error {
    pub fn queue(e: impl std::fmt::Display) -> Self {
        Self::Queue(e.to_string())
    }
    pub fn bus(e: impl std::fmt::Display) -> Self {
        Self::Bus(e.to_string())
    }
}
