//! The task engine end to end against the real release binaries, in distributed mode
//! (PostgreSQL + Redis) and on a single node (SQLite):
//! - batch enqueue rate over HTTP;
//! - end-to-end no-op throughput (HTTP batch submit → queue → worker → completed row), with one
//!   and two worker processes;
//! - submit-to-start latency at a steady moderate rate;
//! - critical-task latency behind a 10,000-task low backlog.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p mcp-tests --bench engine`
//! (`MCP_BENCH_PARTS=distributed,single,latency` picks parts; all by default).

// The helpers are shared with the black-box tests; the benchmark uses only some of them.
#![allow(dead_code)]

#[path = "../helpers/mod.rs"]
mod helpers;
#[path = "../helpers/measure.rs"]
mod measure;

use std::time::{Duration, Instant};

use helpers::{App, Mode, wait_for};
use measure::{percentile, submit_to_start};
use serde_json::{Value, json};

const BATCH: usize = 10_000;

async fn submit(app: &App, n: usize, priority: &str) -> Duration {
    let started = Instant::now();
    let mut left = n;
    while left > 0 {
        let size = left.min(BATCH);
        let tasks: Vec<Value> = (0..size)
            .map(|i| json!({"type": "generic", "priority": priority, "payload": {"i": i}}))
            .collect();
        let (s, b) = app
            .admin("POST", "/api/v1/tasks/batch", Some(json!({"tasks": tasks})))
            .await;
        assert_eq!(s, 202, "{}", b["error"]);
        left -= size;
    }
    started.elapsed()
}

/// Batch submit of `n` tasks and the time until all are completed.
async fn throughput(mode: Mode, workers: usize, n: usize) -> (f64, f64) {
    let mut app = App::start_with(
        mode,
        &[("RUST_LOG", "warn"), ("MCP_WORKER_CONCURRENCY", "64")],
    )
    .await;
    for _ in 1..workers {
        app.start_worker(&[]);
    }
    let base = app.processed("generic").await;
    let t0 = Instant::now();
    let submit_time = submit(&app, n, "low").await;
    wait_for("the batch to drain", Duration::from_secs(900), || async {
        let done = app.processed("generic").await - base;
        if done >= n as i64 {
            Ok(())
        } else {
            Err(format!("{done}"))
        }
    })
    .await;
    (
        n as f64 / submit_time.as_secs_f64(),
        n as f64 / t0.elapsed().as_secs_f64(),
    )
}

/// Whether the `MCP_BENCH_PARTS` list (all parts when unset) names `part`.
fn wanted(part: &str) -> bool {
    std::env::var("MCP_BENCH_PARTS")
        .map_or(true, |parts| parts.split(',').any(|p| p.trim() == part))
}

#[tokio::main]
async fn main() {
    let n = 20_000;
    println!("task engine, release build, no-op tasks");
    for (part, name, mode) in [
        (
            "distributed",
            "distributed (PostgreSQL + Redis)",
            Mode::Distributed,
        ),
        ("single", "single node (SQLite)", Mode::SingleNode),
    ] {
        if !wanted(part) {
            continue;
        }
        let workers: &[usize] = if mode == Mode::Distributed {
            &[1, 2]
        } else {
            &[1]
        };
        for &w in workers {
            let (enqueue, e2e) = throughput(mode, w, n).await;
            println!(
                "  {name:<34} {w} worker process(es): batch enqueue {enqueue:>8.0} tasks/s, end to end {e2e:>7.0} tasks/s ({n} tasks)"
            );
        }
    }

    if !wanted("latency") {
        return;
    }
    let app = App::start_with(Mode::Distributed, &[("RUST_LOG", "warn")]).await;
    let steady = submit_to_start(&app, "medium", 300, Duration::from_millis(10)).await;
    println!(
        "  submit → start at ~100 tasks/s (distributed): p50 {:.2} ms  p99 {:.2} ms",
        percentile(&steady, 0.5),
        percentile(&steady, 0.99)
    );
    submit(&app, 10_000, "low").await;
    let critical = submit_to_start(&app, "critical", 100, Duration::from_millis(20)).await;
    let left = 10_000 - app.processed("generic").await.min(10_000);
    println!(
        "  critical submit → start behind a 10,000 low backlog: p50 {:.2} ms  p99 {:.2} ms  ({left} low still queued at the end)",
        percentile(&critical, 0.5),
        percentile(&critical, 0.99)
    );
}
