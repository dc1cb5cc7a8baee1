//! Real-time fan-out against the real release binaries in distributed mode (worker → Redis
//! stream → API → sockets), with 1,000 WebSocket clients subscribed to `/ws/tasks/progress`:
//! - memory per idle connection (the API process's resident set, before and after);
//! - event latency, from the worker creating the event to each client receiving it, p50/p99,
//!   at a moderate task rate;
//! - fan-out: messages delivered per second across all clients during a burst.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p mcp-tests --bench realtime`

// The helpers are shared with the black-box tests; the benchmark uses only some of them.
#![allow(dead_code)]

#[path = "../helpers/mod.rs"]
mod helpers;
#[path = "../helpers/measure.rs"]
mod measure;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use helpers::{App, Mode, wait_for};
use measure::percentile;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::{connect_async, tungstenite::Message};

const CLIENTS: usize = 1000;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let app = App::start_with(
        Mode::Distributed,
        &[("RUST_LOG", "warn"), ("MAX_AGENT_CONNECTIONS", "5000")],
    )
    .await;
    let pid = app.api_pid();
    let before = rss_kib(pid);

    let delivered = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut sockets = Vec::new();
    for _ in 0..CLIENTS {
        let url = app.ws_url(&format!("/ws/tasks/progress?token={}", app.admin_token));
        let (mut ws, _) = connect_async(url).await.expect("connects");
        // The snapshot: the connection is live.
        ws.next().await.unwrap().unwrap();
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    println!(
        "realtime, release build, distributed, {CLIENTS} WebSocket clients on /ws/tasks/progress"
    );
    println!(
        "  memory per idle connection: {:.1} KiB (API resident set {} → {} MiB)",
        (after.saturating_sub(before)) as f64 / CLIENTS as f64,
        before / 1024,
        after / 1024
    );

    for ws in sockets {
        let delivered = delivered.clone();
        let latencies = latencies.clone();
        let measuring = measuring.clone();
        tokio::spawn(async move {
            let mut ws = ws;
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                delivered.fetch_add(1, Ordering::Relaxed);
                if measuring.load(Ordering::Relaxed) {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    if v["type"] == "task.completed"
                        && let Some(ts) = v["ts"]
                            .as_str()
                            .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                    {
                        let ms = (chrono::Utc::now() - ts).num_microseconds().unwrap_or(0) as f64
                            / 1000.0;
                        latencies.lock().await.push(ms);
                    }
                }
            }
        });
    }

    // Latency at a moderate rate: 100 tasks, one every 20 ms.
    measuring.store(true, Ordering::Relaxed);
    for i in 0..100 {
        app.create_task(json!({"type": "generic", "payload": {"i": i}}))
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for(
        "every client to see every completion",
        Duration::from_secs(60),
        || async {
            let n = latencies.lock().await.len();
            if n >= 100 * CLIENTS {
                Ok(())
            } else {
                Err(format!("{n}"))
            }
        },
    )
    .await;
    measuring.store(false, Ordering::Relaxed);
    let mut lat = latencies.lock().await.clone();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "  event latency (worker → Redis → API → client), {} samples: p50 {:.2} ms  p99 {:.2} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );

    // Fan-out: a burst of 1,000 tasks (about 3 events each) to every client.
    let start = delivered.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let tasks: Vec<Value> = (0..1000)
        .map(|i| json!({"type": "generic", "payload": {"i": i}}))
        .collect();
    let (s, b) = app
        .admin("POST", "/api/v1/tasks/batch", Some(json!({"tasks": tasks})))
        .await;
    assert_eq!(s, 202, "{b}");
    let expected = start + 3 * 1000 * CLIENTS as u64;
    let mut last = (start, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = delivered.load(Ordering::Relaxed);
        if now >= expected || (now == last.0 && last.1.elapsed() > Duration::from_secs(3)) {
            break;
        }
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let got = delivered.load(Ordering::Relaxed) - start;
    let secs = last.1.duration_since(t0).as_secs_f64().max(0.001);
    println!(
        "  fan-out: {got} messages to {CLIENTS} clients in {secs:.2} s = {:.0} messages/s",
        got as f64 / secs
    );
}
