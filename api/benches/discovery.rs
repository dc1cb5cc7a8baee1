//! Discovery and best-agent selection over 10,000 registered agents, in the directory every API
//! replica keeps in memory. Run: `cargo bench -p mcp-api --bench discovery`.

use std::time::Instant;

use chrono::Utc;
use mcp_api::directory::{AgentDirectory, Query};
use mcp_shared::{
    domain::agent::{AgentStatus, BUILTIN_CAPABILITIES as CAPS},
    entities::agents::Model,
};
use serde_json::json;
use uuid::Uuid;

const AGENTS: usize = 10_000;
const QUERIES: usize = 20_000;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = AgentDirectory::new(std::time::Duration::from_secs(3600));
    let now = Utc::now();
    // A deterministic mix: every agent has `generic` and two or three stage capabilities.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..AGENTS {
        let mut caps = vec![json!({"name": "generic"})];
        for _ in 0..(2 + next() % 2) {
            caps.push(json!({"name": CAPS[(next() % 8) as usize]}));
        }
        let status = [
            AgentStatus::Active,
            AgentStatus::Busy,
            AgentStatus::Stale,
            AgentStatus::Offline,
        ][(next() % 4) as usize];
        dir.upsert(Model {
            id: Uuid::now_v7(),
            name: format!("agent-{i:05}"),
            agent_type: "data_processor".into(),
            capabilities: json!(caps),
            status: status.as_str().into(),
            max_concurrency: 1 + (next() % 32) as i32,
            current_load: (next() % 16) as i32,
            metadata: json!({}),
            configuration: None,
            configuration_sealed: None,
            metadata_sealed: None,
            key_hash: format!("h{i}"),
            heartbeat_count: 0,
            registered_at: now,
            last_seen: now,
            updated_at: now,
            deleted_at: None,
            heartbeat_ms: None,
        })
        .await;
    }

    let scenarios: [(&str, Vec<String>, usize, bool); 4] = [
        (
            "one rare capability, limit 100",
            vec!["quality_assessment".into()],
            100,
            false,
        ),
        (
            "two capabilities, limit 100",
            vec!["validation".into(), "export".into()],
            100,
            false,
        ),
        (
            "capability every agent has, limit 100",
            vec!["generic".into()],
            100,
            false,
        ),
        (
            "assignment: best healthy agent (limit 1)",
            vec!["generic".into(), "processing".into()],
            1,
            true,
        ),
    ];
    println!("discovery over {AGENTS} agents, {QUERIES} queries per scenario (release build)");
    for (name, capabilities, limit, healthy_only) in scenarios {
        let q = Query {
            capabilities,
            limit,
            healthy_only,
            ..Default::default()
        };
        let mut samples = Vec::with_capacity(QUERIES);
        let mut found = 0;
        for _ in 0..QUERIES {
            let t = Instant::now();
            found = dir.discover(&q).await.len();
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
        samples.sort_by(f64::total_cmp);
        println!(
            "  {name:<45} results {found:>4}  p50 {:>7.1} µs  p99 {:>7.1} µs",
            percentile(&samples, 0.50),
            percentile(&samples, 0.99)
        );
    }
}
