//! Idle pickup latency, end to end against the real release binaries: from sending
//! `POST /api/v1/tasks` to receiving `task.started` on `/ws/tasks/progress`, with the worker idle
//! before each task. Both run modes.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p mcp-tests --bench pickup`

// The helpers are shared with the black-box tests; the benchmark uses only some of them.
#![allow(dead_code)]

#[path = "../helpers/mod.rs"]
mod helpers;

use std::time::{Duration, Instant};

use futures::StreamExt;
use helpers::{App, Mode};
use serde_json::{Value, json};
use tokio_tungstenite::{connect_async, tungstenite::Message};

const TASKS: usize = 200;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn measure(mode: Mode) -> Vec<f64> {
    let app = App::start(mode).await;
    let url = app.ws_url(&format!("/ws/tasks/progress?token={}", app.admin_token));
    let (mut ws, _) = connect_async(url).await.unwrap();
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
    let mut samples = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        // Let the worker go idle again.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t0 = Instant::now();
        let task = app
            .create_task(json!({"type": "generic", "priority": "high", "payload": {"i": i}}))
            .await;
        let id = task["id"].as_str().unwrap().to_string();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .expect("task.started within 30 s")
                .unwrap()
                .unwrap();
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "task.started" && v["data"]["task_id"] == id.as_str() {
                samples.push(t0.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    samples.sort_by(f64::total_cmp);
    samples
}

#[tokio::main]
async fn main() {
    println!(
        "submit → task.started, idle worker, {TASKS} tasks per mode (HTTP + queue + event bus)"
    );
    for (name, mode) in [
        ("single node (SQLite)", Mode::SingleNode),
        ("distributed (Redis + PostgreSQL)", Mode::Distributed),
    ] {
        let s = measure(mode).await;
        println!(
            "  {name:<34} p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
            percentile(&s, 0.5),
            percentile(&s, 0.99),
            s[s.len() - 1]
        );
    }
}
