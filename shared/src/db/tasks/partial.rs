//! The conditions of the partial indexes on `tasks` (migrations `m20261206_000012_task_indexes`
//! and `m20261206_000014_waiting_index`), written once. A query that should use one repeats its condition as literal SQL: SQLite only
//! uses a partial index whose condition the query states word for word, and PostgreSQL's cached
//! generic plans cannot see bound values, so `status IN ($1, $2)` would not do for either.

use sea_orm::sea_query::{Expr, SimpleExpr};

/// Waiting tasks, pushed to their queue or not (`idx_tasks_waiting`, by queue and id).
pub const WAITING: &str = "status IN ('pending', 'scheduled', 'failed')";
/// Running attempts (`idx_tasks_running`, by lease expiry).
pub const RUNNING: &str = "status = 'running'";
/// What agents hold (`idx_tasks_held`, by agent).
pub const HELD: &str = "status IN ('assigned', 'running')";
/// Finished attempts by agent (`idx_tasks_agent_finished`, by agent and finish time).
pub const AGENT_FINISHED: &str = "status IN ('completed', 'failed', 'dead')";
/// Finished tasks retention has not purged (`idx_tasks_purgeable`, by finish time).
pub const PURGEABLE: &str = "status IN ('completed', 'dead', 'cancelled') AND purged_at IS NULL";
/// Every task that is not completed (`idx_tasks_open`, by status and id).
pub const OPEN: &str = "status <> 'completed'";

/// One of the conditions above, as a filter.
pub fn condition(sql: &'static str) -> SimpleExpr {
    Expr::cust(sql)
}

#[cfg(test)]
mod tests {
    use mcp_migrations::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, Statement};

    use crate::db::Database;

    /// The plan SQLite picks for `sql`, one line per step.
    async fn plan(db: &Database, sql: &str) -> String {
        let rows = db
            .conn
            .query_all_raw(Statement::from_string(
                db.conn.get_database_backend(),
                format!("EXPLAIN QUERY PLAN {sql}"),
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.try_get::<String>("", "detail").unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn the_queries_use_their_partial_indexes() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migrator::up(&db.conn, None).await.unwrap();
        for (sql, index) in [
            (
                format!(
                    "SELECT id FROM tasks WHERE {} AND queue = 'q' AND enqueued_at IS NULL ORDER BY id LIMIT 10",
                    super::WAITING
                ),
                "idx_tasks_waiting",
            ),
            (
                format!(
                    "SELECT id FROM tasks WHERE {} AND lease_expires_at < '2030-01-01'",
                    super::RUNNING
                ),
                "idx_tasks_running",
            ),
            (
                format!(
                    "SELECT id FROM tasks WHERE {} AND agent_id = 'a'",
                    super::HELD
                ),
                "idx_tasks_held",
            ),
            (
                format!(
                    "SELECT id FROM tasks WHERE {} AND agent_id = 'a' ORDER BY finished_at DESC",
                    super::AGENT_FINISHED
                ),
                "idx_tasks_agent_finished",
            ),
            (
                format!(
                    "SELECT id FROM tasks WHERE {} AND finished_at < '2030-01-01'",
                    super::PURGEABLE
                ),
                "idx_tasks_purgeable",
            ),
            (
                format!(
                    "SELECT id FROM tasks WHERE {} AND status = 'dead' ORDER BY id DESC",
                    super::OPEN
                ),
                "idx_tasks_open",
            ),
        ] {
            let plan = plan(&db, &sql).await;
            assert!(plan.contains(index), "{sql}\nuses\n{plan}");
        }
    }
}
