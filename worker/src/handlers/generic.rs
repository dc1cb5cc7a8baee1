//! The built-in `generic` handler: returns the payload as the result. `sleep_ms` in the payload
//! makes it take that long (tests use it to hold a task in `running`); `fail: true` makes the
//! attempt fail. With `MCP_ENABLE_TEST_HOOKS=1` in the worker's environment (never in
//! production), `crash: true` aborts the whole worker process, to exercise crash-loop handling.

use std::time::Duration;

use mcp_shared::entities::tasks::Model;
use serde_json::Value;

use super::failure::HandlerError;

/// The longest a payload may ask the handler to sleep.
const MAX_SLEEP: Duration = Duration::from_secs(600);

pub async fn run(task: &Model) -> Result<Value, HandlerError> {
    if let Some(ms) = task.payload.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms).min(MAX_SLEEP)).await;
    }
    if task.payload.get("crash").and_then(Value::as_bool) == Some(true)
        && std::env::var("MCP_ENABLE_TEST_HOOKS").as_deref() == Ok("1")
        && std::env::var("MCP_ENV").as_deref() != Ok("production")
    {
        tracing::error!("test hook: crashing the worker process on purpose");
        std::process::abort();
    }
    if task.payload.get("fail").and_then(Value::as_bool) == Some(true) {
        return Err("payload asked the generic handler to fail".into());
    }
    Ok(task.payload.clone())
}
