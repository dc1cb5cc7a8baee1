//! Latency measurements shared by the benchmarks.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::{connect_async, tungstenite::Message};

use super::App;

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Milliseconds from sending each create to receiving its `task.started` on
/// `/ws/tasks/progress`, for `count` tasks `gap` apart; sorted.
pub async fn submit_to_start(app: &App, priority: &str, count: usize, gap: Duration) -> Vec<f64> {
    submit_to_start_split(app, priority, count, gap).await.event
}

/// Where the time of a start goes: the whole trip to the client, and the part the task row
/// records (`created_at` → `started_at`, the server's own clock). The rest is the event's way
/// out (stream, fan-out, WebSocket) behind everything else published meanwhile.
pub struct StartLatency {
    /// Create sent → `task.started` received; sorted.
    pub event: Vec<f64>,
    /// The row's `created_at` → `started_at`; sorted.
    pub row: Vec<f64>,
}

pub async fn submit_to_start_split(
    app: &App,
    priority: &str,
    count: usize,
    gap: Duration,
) -> StartLatency {
    let url = app.ws_url(&format!("/ws/tasks/progress?token={}", app.admin_token));
    let (mut ws, _) = connect_async(url).await.unwrap();
    let mut samples = Vec::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        tokio::time::sleep(gap).await;
        let t0 = Instant::now();
        let task = app
            .create_task(json!({"type": "generic", "priority": priority, "payload": {"probe": i}}))
            .await;
        let id = task["id"].as_str().unwrap().to_string();
        ids.push(id.clone());
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
                .await
                .expect("task.started within 60 s")
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
    let mut row = Vec::with_capacity(count);
    for id in ids {
        let (_, t) = app.admin("GET", &format!("/api/v1/tasks/{id}"), None).await;
        let time = |k: &str| {
            t["data"][k]
                .as_str()
                .and_then(|s| s.parse::<chrono::DateTime<chrono::Utc>>().ok())
        };
        // Rows without `started_at` in the view: count only what both ends record.
        if let (Some(a), Some(b)) = (time("created_at"), time("started_at")) {
            row.push((b - a).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    row.sort_by(f64::total_cmp);
    StartLatency {
        event: samples,
        row,
    }
}
