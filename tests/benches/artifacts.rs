//! Upload and export throughput through the artifact store, on a single node against the real
//! release binaries: a dataset uploaded (`POST /api/v1/datasets`, sealed as it is written) and
//! a completed execution's export downloaded (`GET /api/v1/pipeline/{id}/results`, opened as it
//! is read), in MB/s, the median of several rounds.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p mcp-tests --bench artifacts`.
//! To compare with another build (say, one from before a change to the store), build it and
//! run again with `MCP_BIN_DIR` set to its `target/release` directory.

// The helpers are shared with the black-box tests; the benchmark uses only some of them.
#![allow(dead_code)]

#[path = "../helpers/mod.rs"]
mod helpers;

use std::time::{Duration, Instant};

use helpers::{App, Mode, synth};
use serde_json::json;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let records: usize = std::env::var("MCP_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40_000);
    let rounds = 7;
    let dataset = synth::ndjson(42, records);
    let mb = |bytes: usize| bytes as f64 / 1e6;
    println!(
        "artifacts, release build, single node, {records} synthetic conversations ({:.1} MB), median of {rounds} rounds, binaries from {}",
        mb(dataset.len()),
        helpers::app::binary("mcp-api").parent().unwrap().display()
    );
    let app = App::start_with(Mode::SingleNode, &[("RUST_LOG", "warn")]).await;

    let mut upload = Vec::new();
    let mut dataset_id = None;
    for _ in 0..rounds {
        let t0 = Instant::now();
        let (status, body) = app.upload("application/x-ndjson", dataset.clone()).await;
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(status, 201, "{body}");
        upload.push(mb(dataset.len()) / secs);
        dataset_id = Some(body["data"]["dataset_id"].clone());
    }
    println!("  upload  {:>7.1} MB/s", median(upload));

    let id = app.start_execution(&dataset_id.unwrap(), json!({})).await;
    let done = app.wait_execution(&id, Duration::from_secs(1800)).await;
    assert_eq!(done["status"], "completed", "{done}");
    for format in ["jsonl", "csv"] {
        let mut export = Vec::new();
        let mut size = 0;
        for _ in 0..rounds {
            let t0 = Instant::now();
            let (status, text) = app.results(&id, format).await;
            let secs = t0.elapsed().as_secs_f64();
            assert_eq!(status, 200, "{text}");
            size = text.len();
            export.push(mb(size) / secs);
        }
        println!(
            "  export  {:>7.1} MB/s  ({format}, {:.1} MB)",
            median(export),
            mb(size)
        );
    }
}
