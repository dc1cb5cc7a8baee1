//! The six-stage pipeline end to end against the real release binaries: 100,000 synthetic
//! conversations from the seeded generator, run with one and with two worker processes per
//! stage (distributed: PostgreSQL + Redis + the stage binaries), and on a single node (all
//! stages inside the API). Reports records/s per stage (its shards' first start to last finish)
//! and end to end (submit to `completed`).
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p mcp-tests --bench pipeline`
//! (`MCP_BENCH_RECORDS` changes the dataset size).

// The helpers are shared with the black-box tests; the benchmark uses only some of them.
#![allow(dead_code)]

#[path = "../helpers/mod.rs"]
mod helpers;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use helpers::{App, Mode, synth};
use serde_json::{Value, json};

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| s.parse().ok())
}

async fn run(mode: Mode, per_stage: usize, dataset: &[u8], records: usize) {
    let mut app = App::start_with(mode, &[("RUST_LOG", "warn")]).await;
    if mode == Mode::Distributed {
        app.start_stage_workers(per_stage).await;
    }
    let (status, body) = app.upload("application/x-ndjson", dataset.to_vec()).await;
    assert_eq!(status, 201, "{body}");
    let t0 = Instant::now();
    let id = app
        .start_execution(&body["data"]["dataset_id"], json!({}))
        .await;
    let done = app.wait_execution(&id, Duration::from_secs(1800)).await;
    let total = t0.elapsed();
    assert_eq!(done["status"], "completed", "{done}");
    let (_, progress) = app
        .admin(
            "GET",
            &format!("/api/v1/pipeline/{id}/agent-progress"),
            None,
        )
        .await;
    let label = match mode {
        Mode::Distributed => format!("distributed, {per_stage} worker process(es) per stage"),
        Mode::SingleNode => "single node (stages inside the API)".to_string(),
    };
    println!(
        "  {label}: end to end {:>7.0} records/s ({records} records in {:.1} s)",
        records as f64 / total.as_secs_f64(),
        total.as_secs_f64()
    );
    for s in progress["data"]["stages"].as_array().unwrap() {
        let (Some(a), Some(b)) = (time(&s["started_at"]), time(&s["finished_at"])) else {
            continue;
        };
        let secs = ((b - a).num_milliseconds().max(1)) as f64 / 1000.0;
        let n = s["records_in"].as_f64().unwrap_or(0.0);
        println!(
            "    {:<20} {:>9.0} records/s  ({} shards, {} in → {} out, {:.2} s)",
            s["stage"].as_str().unwrap(),
            n / secs,
            s["shards"],
            s["records_in"],
            s["records_out"],
            secs
        );
    }
}

#[tokio::main]
async fn main() {
    let records: usize = std::env::var("MCP_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dataset = synth::ndjson(42, records);
    println!(
        "pipeline, release build, {records} synthetic conversations ({:.1} MB, seed 42, shards of 10,000)",
        dataset.len() as f64 / 1e6
    );
    for per_stage in [1, 2] {
        run(Mode::Distributed, per_stage, &dataset, records).await;
    }
    run(Mode::SingleNode, 1, &dataset, records).await;
}
