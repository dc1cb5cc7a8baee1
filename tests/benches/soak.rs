//! The scale-out soak at full size: two API processes and three worker processes on PostgreSQL
//! (`fsync` on) + Redis (`appendfsync always`), 200,000 no-op tasks across the four tiers
//! submitted at a steady rate, one worker process and one API process SIGKILLed and restarted
//! every 20 s. Fails if any task is lost or completed twice; prints throughput and latency.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p mcp-tests --bench soak`
//! (`MCP_SOAK_TASKS`, `MCP_SOAK_RATE` tasks/s and `MCP_SOAK_KILL_EVERY_S` change the defaults:
//! 200,000, 4,000 and 20).

#![allow(dead_code)]

#[path = "../helpers/mod.rs"]
mod helpers;

use std::time::Duration;

use helpers::soak::{self, Soak};

fn setting(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let tasks = setting("MCP_SOAK_TASKS", 200_000.0) as usize;
    let rate = setting("MCP_SOAK_RATE", 4_000.0);
    let kill_every = Duration::from_secs_f64(setting("MCP_SOAK_KILL_EVERY_S", 20.0));
    println!(
        "soak: {tasks} tasks at {rate:.0}/s offered, 2 API + 3 worker processes, one of each SIGKILLed every {kill_every:?}"
    );
    let r = soak::run(Soak {
        tasks,
        rate,
        kill_every,
        durable: true,
    })
    .await;
    println!(
        "  all {tasks} completed exactly once in {:.1} s ({:.0} tasks/s) through {} worker and {} API kills; created → completed p50 {:.1} ms, p99 {:.1} ms; {} tasks needed a second attempt",
        r.elapsed.as_secs_f64(),
        tasks as f64 / r.elapsed.as_secs_f64(),
        r.worker_kills,
        r.api_kills,
        r.p50_ms,
        r.p99_ms,
        r.retried,
    );
}
