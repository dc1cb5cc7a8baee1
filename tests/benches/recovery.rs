//! How fast work comes back after a loss, distributed mode (PostgreSQL with `fsync` on, Redis
//! with `appendfsync always`), release binaries:
//! - a worker process SIGKILLed with 16 two-second tasks running: time from the kill until each
//!   of them starts again on the worker that is left (its second attempt), and proof each still
//!   completed once;
//! - 1,500 tasks of 200 ms on one worker process of 64 slots (about 5 s of work): redis-server
//!   SIGKILLed and started empty, then the API SIGKILLed and started again; the longest time no
//!   task started after the loss, and the time until all were done.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p mcp-tests --bench recovery`

#![allow(dead_code)]

#[path = "../helpers/mod.rs"]
mod helpers;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::StreamExt;
use helpers::{App, Mode, wait_for};
use serde_json::{Value, json};
use tokio_tungstenite::{connect_async, tungstenite::Message};

async fn submit(app: &App, count: usize, sleep_ms: u64) {
    let tasks: Vec<Value> = (0..count)
        .map(|i| json!({"type": "generic", "payload": {"i": i, "sleep_ms": sleep_ms}, "max_attempts": 5}))
        .collect();
    let (s, b) = app
        .admin("POST", "/api/v1/tasks/batch", Some(json!({"tasks": tasks})))
        .await;
    assert_eq!(s, 202, "{}", b["error"]);
}

async fn wait_processed(app: &App, n: i64, within: Duration) {
    wait_for("the tasks to complete", within, || async {
        let done = app.processed("generic").await;
        if done >= n {
            Ok(())
        } else {
            Err(format!("{done} of {n}"))
        }
    })
    .await;
}

/// Worker SIGKILL: seconds from the kill until each task it was running starts again.
async fn killed_worker() {
    const RUNNING: usize = 16;
    let mut app = App::start_durable(
        Mode::Distributed,
        &[
            ("RUST_LOG", "warn"),
            ("MCP_WORKER_CONCURRENCY", &RUNNING.to_string()),
        ],
    )
    .await;
    let url = app.ws_url(&format!("/ws/tasks/progress?token={}", app.admin_token));
    let (mut ws, _) = connect_async(url).await.unwrap();
    submit(&app, RUNNING, 2000).await;
    // Every slot of the first worker busy; then a second worker, idle, to take over.
    let mut started: HashMap<String, u32> = HashMap::new();
    while started.len() < RUNNING {
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            continue;
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["type"] == "task.started" {
            started.insert(v["data"]["task_id"].as_str().unwrap().to_string(), 1);
        }
    }
    app.start_worker(&[]);
    wait_for(
        "the second worker to register",
        Duration::from_secs(30),
        || async {
            let (_, a) = app.admin("GET", "/api/v1/agents?limit=100", None).await;
            let workers = a["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["name"].as_str().is_some_and(|n| n.starts_with("worker-")))
                .filter(|a| a["status"] == "active" || a["status"] == "busy")
                .count();
            if workers >= 2 {
                Ok(())
            } else {
                Err(format!("{workers} workers"))
            }
        },
    )
    .await;
    let killed = Instant::now();
    app.kill_oldest_worker();
    let mut again = Vec::with_capacity(RUNNING);
    let mut completed = 0;
    while completed < RUNNING {
        let msg = tokio::time::timeout(Duration::from_secs(120), ws.next())
            .await
            .expect("the killed worker's tasks come back within 2 minutes");
        let Some(Ok(Message::Text(text))) = msg else {
            continue;
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        let Some(id) = v["data"]["task_id"].as_str() else {
            continue;
        };
        match v["type"].as_str() {
            Some("task.started") => {
                let n = started.entry(id.to_string()).or_default();
                *n += 1;
                if *n == 2 {
                    again.push(killed.elapsed().as_secs_f64());
                }
            }
            Some("task.completed") => completed += 1,
            _ => {}
        }
    }
    again.sort_by(f64::total_cmp);
    assert_eq!(again.len(), RUNNING, "each killed task started again");
    wait_processed(&app, RUNNING as i64, Duration::from_secs(60)).await;
    println!(
        "  worker SIGKILLed with {RUNNING} tasks running: they started again {:.2}–{:.2} s after the kill (MCP_WORKER_HEARTBEAT_MS 1000 × 3 missed); {completed} completions, one per task",
        again[0],
        again[again.len() - 1],
    );
}

/// Redis restarted empty, then the API restarted: the longest pause in task starts after the
/// loss, and the time until everything is done.
async fn lost_redis_and_api() {
    const TASKS: usize = 1500;
    let mut app = App::start_durable(
        Mode::Distributed,
        &[("RUST_LOG", "warn"), ("MCP_WORKER_CONCURRENCY", "64")],
    )
    .await;
    let t0 = Instant::now();
    submit(&app, TASKS, 200).await;
    wait_processed(&app, 300, Duration::from_secs(60)).await;
    let lost_at = chrono::Utc::now();
    let lost = Instant::now();
    let redis = app.redis.as_mut().unwrap();
    redis.stop();
    redis.wipe();
    redis.spawn();
    app.kill_api();
    app.start_api();
    app.wait_healthy().await;
    wait_processed(&app, TASKS as i64, Duration::from_secs(600)).await;
    let done = lost.elapsed();
    // The longest stretch after the loss in which no task started: how long the engine sat idle.
    let gap = app.sql(&format!(
        "SELECT coalesce(max(gap), 0) FROM (SELECT extract(epoch FROM started_at - lag(started_at, 1, '{lost_at}'::timestamptz) OVER (ORDER BY started_at)) AS gap \
         FROM tasks WHERE started_at >= '{lost_at}') g"
    ));
    let dead = app.sql("SELECT count(*) FROM tasks WHERE status <> 'completed'");
    assert_eq!(dead.trim(), "0", "every task completed");
    println!(
        "  {TASKS} tasks of 200 ms on 64 slots ({:.1} s in all): Redis SIGKILLed and started empty, then the API SIGKILLed: the longest pause in task starts after the loss {:.2} s; all done {:.1} s after the loss",
        t0.elapsed().as_secs_f64(),
        gap.trim().parse::<f64>().unwrap(),
        done.as_secs_f64(),
    );
}

#[tokio::main]
async fn main() {
    println!("recovery, distributed, release build");
    killed_worker().await;
    lost_redis_and_api().await;
}
