//! Idle pickup latency, end to end against the real release binaries: from sending
//! `POST /api/v1/tasks` to receiving `task.started` on `/ws/tasks/progress`, with the worker idle
//! before each task. Both run modes.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p mcp-tests --bench pickup`

// The helpers are shared with the black-box tests; the benchmark uses only some of them.
#![allow(dead_code)]

#[path = "../helpers/mod.rs"]
mod helpers;
#[path = "../helpers/measure.rs"]
mod measure;

use std::time::Duration;

use helpers::{App, Mode};
use measure::{percentile, submit_to_start};
use serde_json::json;

const TASKS: usize = 200;

#[tokio::main]
async fn main() {
    println!(
        "submit → task.started, idle worker, {TASKS} tasks per mode (HTTP + queue + event bus)"
    );
    for (name, mode) in [
        ("single node (SQLite)", Mode::SingleNode),
        ("distributed (Redis + PostgreSQL)", Mode::Distributed),
    ] {
        let app = App::start(mode).await;
        // Wait until a worker is registered and idle.
        let warmup = app
            .create_task(json!({"type": "generic", "payload": {}}))
            .await;
        app.wait_status(
            warmup["id"].as_str().unwrap(),
            "completed",
            Duration::from_secs(30),
        )
        .await;
        let s = submit_to_start(&app, "high", TASKS, Duration::from_millis(5)).await;
        println!(
            "  {name:<34} p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
            percentile(&s, 0.5),
            percentile(&s, 0.99),
            s[s.len() - 1]
        );
    }
}
