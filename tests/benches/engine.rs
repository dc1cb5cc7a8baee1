//! The task engine end to end against the real release binaries, in distributed mode
//! (PostgreSQL + Redis) and on a single node (SQLite), and BullMQ measured the same way in the
//! same run on the same machine, with the ratios:
//! - batch enqueue rate over HTTP (BullMQ: `addBulk`);
//! - end-to-end no-op throughput: batch submit → queue → worker → completed row, one worker
//!   process (and two, distributed); BullMQ: `addBulk` → one worker process, concurrency 50;
//! - enqueue → handler start, one task at a time at ~250/s, idle workers;
//! - critical-task latency behind a 10,000-task low backlog;
//! - for each throughput run, its cost per task: CPU by process, PostgreSQL commits and row
//!   writes, Redis commands.
//!
//! Durability, as run here: ours commits every task row and transition to PostgreSQL (`fsync`
//! on, synchronous commit) or SQLite (WAL, `synchronous=NORMAL`: a committed transition survives
//! a process kill) before reporting it, and runs Redis with `appendfsync always`; BullMQ keeps
//! everything in Redis, run here without persistence (its fastest setting).
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p mcp-tests --bench engine`
//! (`MCP_BENCH_PARTS=distributed,single,latency,bullmq` picks parts, all by default;
//! `MCP_BENCH_TASKS` sets the batch size, 20,000 by default). The BullMQ part needs Node.js and
//! npm, and installs BullMQ from `tests/benches/bullmq/package.json` into `target/`.

// The helpers are shared with the black-box tests; the benchmark uses only some of them.
#![allow(dead_code)]

#[path = "../helpers/mod.rs"]
mod helpers;
#[path = "../helpers/measure.rs"]
mod measure;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use helpers::{App, Mode, cost, servers::Redis, wait_for};
use measure::{percentile, submit_to_start_split};
use serde_json::{Value, json};

const BATCH: usize = 10_000;

/// Submits `n` tasks in batches; returns how long it took and the ids, in submission order.
async fn submit(app: &App, n: usize, priority: &str) -> (Duration, Vec<String>) {
    let started = Instant::now();
    let mut ids = Vec::with_capacity(n);
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
        ids.extend(
            b["data"]["task_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
        left -= size;
    }
    (started.elapsed(), ids)
}

/// When the last of `ids` finished, by the server's clock: the newest `finished_at` among the
/// last tasks submitted (the queue is first in, first out).
async fn last_finished(app: &App, ids: &[String]) -> chrono::DateTime<chrono::Utc> {
    let mut last = chrono::DateTime::<chrono::Utc>::MIN_UTC;
    for id in ids.iter().rev().take(64) {
        let (_, t) = app.admin("GET", &format!("/api/v1/tasks/{id}"), None).await;
        let finished: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(t["data"]["updated_at"].clone()).unwrap();
        last = last.max(finished);
    }
    last
}

/// Batch submit of `n` tasks and the time until all are completed: (enqueue rate, end-to-end
/// rate, what it cost per task). Completion is polled slowly, so as not to load the server being
/// measured, and timed by the server's own clock.
async fn throughput(mode: Mode, workers: usize, n: usize) -> (f64, f64, String) {
    let mut app = App::start_durable(
        mode,
        &[("RUST_LOG", "warn"), ("MCP_WORKER_CONCURRENCY", "1024")],
    )
    .await;
    for _ in 1..workers {
        app.start_worker(&[]);
    }
    let base = app.processed("generic").await;
    let before = cost::snapshot(&app).await;
    let t0 = chrono::Utc::now();
    let (submit_time, ids) = submit(&app, n, "low").await;
    // Counting from the task rows is a scan of the table: once a second is enough, since the
    // end is timed by the rows' own timestamps.
    wait_for("the batch to drain", Duration::from_secs(900), || async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let done = app.processed("generic").await - base;
        if done >= n as i64 {
            Ok(())
        } else {
            Err(format!("{done}"))
        }
    })
    .await;
    let elapsed = (last_finished(&app, &ids).await - t0).to_std().unwrap();
    let after = cost::snapshot(&app).await;
    (
        n as f64 / submit_time.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        cost::per_task(&before, &after, n),
    )
}

/// Enqueue → start for `count` tasks, one at a time ~4 ms apart (~250/s), as the BullMQ probe
/// measures: the client's clock before the request, the server's clock in the `task.started`
/// event (its `ts`, taken when the start is recorded), so event delivery does not count.
async fn enqueue_to_start(app: &App, priority: &str, count: usize) -> Vec<f64> {
    use futures::StreamExt;
    use tokio_tungstenite::{connect_async, tungstenite::Message};
    let url = app.ws_url(&format!("/ws/tasks/progress?token={}", app.admin_token));
    let (mut ws, _) = connect_async(url).await.unwrap();
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        tokio::time::sleep(Duration::from_millis(4)).await;
        let t0 = chrono::Utc::now();
        let t = app
            .create_task(json!({"type": "generic", "priority": priority, "payload": {"probe": i}}))
            .await;
        let id = t["id"].as_str().unwrap().to_string();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
                .await
                .expect("task.started within 60 s")
                .unwrap()
                .unwrap();
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "task.started" && v["data"]["task_id"] == id.as_str() {
                let at: chrono::DateTime<chrono::Utc> =
                    serde_json::from_value(v["ts"].clone()).unwrap();
                samples.push((at - t0).num_microseconds().unwrap() as f64 / 1000.0);
                break;
            }
        }
    }
    samples.sort_by(f64::total_cmp);
    samples
}

/// Whether the `MCP_BENCH_PARTS` list (all parts when unset) names `part`.
fn wanted(part: &str) -> bool {
    std::env::var("MCP_BENCH_PARTS")
        .map_or(true, |parts| parts.split(',').any(|p| p.trim() == part))
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// BullMQ's figures on a redis-server of its own without persistence: installs the pinned
/// BullMQ into `target/bullmq-bench` (once) and runs `tests/benches/bullmq/bench.mjs`.
fn bullmq(n: usize) -> BTreeMap<String, Value> {
    let dir: PathBuf = repo().join("target/bullmq-bench");
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["package.json", "bench.mjs"] {
        std::fs::copy(
            repo().join("tests/benches/bullmq").join(file),
            dir.join(file),
        )
        .unwrap();
    }
    if !dir.join("node_modules/bullmq").exists() {
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .expect("npm runs (install Node.js and npm to compare with BullMQ)");
        assert!(
            out.status.success(),
            "npm install failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let redis = Redis::start_without_persistence();
    let out = Command::new("node")
        .arg("bench.mjs")
        .arg(redis.port.to_string())
        .arg(n.to_string())
        .current_dir(&dir)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "the BullMQ benchmark failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| (v["measure"].as_str().unwrap_or_default().to_string(), v))
        .collect()
}

fn ratio(ours: f64, theirs: Option<f64>) -> String {
    theirs.map_or(String::new(), |t| format!(" = {:.2}× BullMQ", ours / t))
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("MCP_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    println!("task engine, release build, no-op tasks, {n} per run");
    let theirs = wanted("bullmq").then(|| bullmq(n));
    let their = |measure: &str, field: &str| {
        theirs
            .as_ref()
            .and_then(|t| t.get(measure))
            .and_then(|v| v[field].as_f64())
    };
    if theirs.is_some() {
        println!(
            "  BullMQ 6.7 (1 process, concurrency 50, Redis without persistence): addBulk {:.0} jobs/s, end to end {:.0} jobs/s ({:.0}/s with 4 priorities), enqueue → start p50 {:.2} ms p99 {:.2} ms",
            their("enqueue", "rate").unwrap_or_default(),
            their("e2e", "rate").unwrap_or_default(),
            their("e2e4", "rate").unwrap_or_default(),
            their("latency", "p50").unwrap_or_default(),
            their("latency", "p99").unwrap_or_default(),
        );
    }
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
            let (enqueue, e2e, cost) = throughput(mode, w, n).await;
            println!(
                "  {name:<34} {w} worker process(es): batch enqueue {enqueue:>8.0} tasks/s{}, end to end {e2e:>7.0} tasks/s{}\n{cost}",
                ratio(enqueue, their("enqueue", "rate")),
                ratio(e2e, their("e2e", "rate")),
            );
        }
    }

    if !wanted("latency") {
        return;
    }
    for (name, mode) in [
        ("distributed", Mode::Distributed),
        ("single node", Mode::SingleNode),
    ] {
        let app = App::start_durable(mode, &[("RUST_LOG", "warn")]).await;
        let steady = enqueue_to_start(&app, "medium", 500).await;
        let (p50, p99) = (percentile(&steady, 0.5), percentile(&steady, 0.99));
        println!(
            "  enqueue → start at ~250/s ({name}): p50 {p50:.2} ms{}  p99 {p99:.2} ms{}",
            their("latency", "p50").map_or(String::new(), |t| format!(" ({:.2}× BullMQ)", p50 / t)),
            their("latency", "p99").map_or(String::new(), |t| format!(" ({:.2}× BullMQ)", p99 / t)),
        );
        submit(&app, 10_000, "low").await;
        let critical =
            submit_to_start_split(&app, "critical", 100, Duration::from_millis(20)).await;
        let left = 10_000 - app.processed("generic").await.min(10_000);
        println!(
            "  critical submit → start behind a 10,000 low backlog ({name}): p50 {:.2} ms  p99 {:.2} ms  ({left} low still queued at the end); of which created → started in the row: p50 {:.2} ms  p99 {:.2} ms",
            percentile(&critical.event, 0.5),
            percentile(&critical.event, 0.99),
            percentile(&critical.row, 0.5),
            percentile(&critical.row, 0.99)
        );
    }
}
