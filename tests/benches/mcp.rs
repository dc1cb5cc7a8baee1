//! Tool-call latency of `/mcp` against the same operation over REST, on the real release
//! binaries, in both modes: submit (`tools/call submit_task` vs `POST /api/v1/tasks`) and get
//! (`tools/call get_task` vs `GET /api/v1/tasks/{id}`), one request at a time, p50/p99.
//! Each MCP call is one stateless JSON-RPC POST, as any MCP client sends it after the handshake.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p mcp-tests --bench mcp`

// The helpers are shared with the black-box tests; the benchmark uses only some of them.
#![allow(dead_code)]

#[path = "../helpers/mod.rs"]
mod helpers;
#[path = "../helpers/measure.rs"]
mod measure;

use std::time::Instant;

use helpers::{App, Mode};
use measure::percentile;
use serde_json::{Value, json};

const CALLS: usize = 1000;
const WARMUP: usize = 50;

async fn mcp_call(app: &App, id: usize, tool: &str, arguments: Value) -> Value {
    let resp = app
        .http
        .post(format!("{}/mcp", app.base))
        .bearer_auth(&app.admin_token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": tool, "arguments": arguments}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["result"]["isError"], false, "{body}");
    body["result"]["structuredContent"].clone()
}

fn report(label: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    println!(
        "{label:<34} p50 {:>7.2} ms   p99 {:>7.2} ms",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99)
    );
}

async fn run(mode: Mode) {
    let app = App::start_with(mode, &[("RUST_LOG", "warn")]).await;
    println!("{mode:?}, {CALLS} calls each, one at a time:");
    let (mut rest_submit, mut mcp_submit, mut rest_get, mut mcp_get) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut ids = Vec::new();
    for i in 0..WARMUP + CALLS {
        let payload = json!({"type": "generic", "payload": {"bench": i}, "priority": "low"});
        let t0 = Instant::now();
        let (s, b) = app.admin("POST", "/api/v1/tasks", Some(payload)).await;
        let rest = t0.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(s, 201, "{b}");
        let t0 = Instant::now();
        let created = mcp_call(
            &app,
            i,
            "submit_task",
            json!({"type": "generic", "payload": {"bench": i, "via": "mcp"}, "priority": "low"}),
        )
        .await;
        let mcp = t0.elapsed().as_secs_f64() * 1000.0;
        if i >= WARMUP {
            rest_submit.push(rest);
            mcp_submit.push(mcp);
        }
        ids.push(created["task"]["id"].as_str().unwrap().to_string());
    }
    for (i, id) in ids.iter().enumerate() {
        let t0 = Instant::now();
        let (s, _) = app.admin("GET", &format!("/api/v1/tasks/{id}"), None).await;
        let rest = t0.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(s, 200);
        let t0 = Instant::now();
        mcp_call(&app, i, "get_task", json!({"task_id": id})).await;
        let mcp = t0.elapsed().as_secs_f64() * 1000.0;
        if i >= WARMUP {
            rest_get.push(rest);
            mcp_get.push(mcp);
        }
    }
    report("submit  REST POST /api/v1/tasks", rest_submit);
    report("submit  MCP tools/call submit_task", mcp_submit);
    report("get     REST GET /api/v1/tasks/{id}", rest_get);
    report("get     MCP tools/call get_task", mcp_get);
}

#[tokio::main]
async fn main() {
    run(Mode::SingleNode).await;
    run(Mode::Distributed).await;
}
