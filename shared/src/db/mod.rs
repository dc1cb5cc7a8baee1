//! Connecting to the database (SQLite or PostgreSQL) and the queries that change state.
//!
//! Every state change of a task is a conditional update (`UPDATE … WHERE status IN (…)`), so a
//! duplicate job delivery or a repeated request cannot apply an effect twice.

pub mod agents;
pub mod audit;
pub mod pipelines;
pub mod schedules;
pub mod tasks;
pub mod tokens;
pub mod users;

use std::{str::FromStr, time::Duration};

use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseConnection, DbErr, SqlxSqliteConnector,
    sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::{Error, Result};

/// The database handle.
#[derive(Debug, Clone)]
pub struct Database {
    pub conn: DatabaseConnection,
    /// For reads that need not wait behind writes: on a SQLite file, a few read-only connections
    /// beside the one writer (WAL lets them read while it writes); otherwise `conn` itself.
    pub reads: DatabaseConnection,
}

impl Database {
    pub async fn connect(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url).map_err(|e| {
                Error::Config(format!("DATABASE_URL is not a valid SQLite URL: {e}"))
            })?;
            if let Some(dir) = options.get_filename().parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            let options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .synchronous(SqliteSynchronous::Normal)
                // The engine's working set (waiting and running tasks, their indexes) stays in
                // memory: SQLite's default 2 MiB page cache sent every statement to the kernel
                // for pages it had just read.
                .pragma("cache_size", "-65536")
                .pragma("mmap_size", "268435456")
                .pragma("temp_store", "memory");
            let opening = |e: sea_orm::sqlx::Error| {
                Error::Database(DbErr::Custom(format!("opening SQLite: {e}")))
            };
            // One writer: SQLite has one writer anyway, and with several connections writers
            // sleep in the busy handler while another holds the lock (1.4x slower end to end).
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .map_err(opening)?;
            let conn = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool);
            // An in-memory database is private to its connection: no readers beside it.
            let reads = if url.contains(":memory:") || url.contains("mode=memory") {
                conn.clone()
            } else {
                let readers = SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(options.read_only(true))
                    .await
                    .map_err(opening)?;
                SqlxSqliteConnector::from_sqlx_sqlite_pool(readers)
            };
            Ok(Self { conn, reads })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut options = ConnectOptions::new(url.to_owned());
            options
                .max_connections(32)
                .min_connections(1)
                .connect_timeout(Duration::from_secs(10))
                .sqlx_logging(false);
            let conn = sea_orm::Database::connect(options).await?;
            Ok(Self {
                reads: conn.clone(),
                conn,
            })
        } else {
            Err(Error::Config(
                "DATABASE_URL must start with sqlite: or postgres:".into(),
            ))
        }
    }

    /// A trivial query, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        self.conn
            .execute_unprepared("SELECT 1")
            .await
            .map(|_| ())
            .map_err(Error::from)
    }
}
