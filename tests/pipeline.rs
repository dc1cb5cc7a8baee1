//! The six-stage pipeline end to end: a mixed dataset through stage-specific worker processes
//! (distributed) and inside the API (single node), with exact outputs and report counts, the
//! same outputs from both modes and after a stage worker is SIGKILLed, and the bad-input cases.

use std::{collections::BTreeSet, time::Duration};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::helpers::{App, Mode, app::STAGES, wait_for};

/// The stage names, in order.
fn stage_names() -> Vec<&'static str> {
    STAGES.iter().map(|(s, _)| *s).collect()
}

/// Planted PII, each of which must disappear from every export.
const PLANTED: &[&str] = &[
    "dana.reyes@example.org",
    "(415) 555-0199",
    "0199",
    "078-05-1120",
    "4012 8888 8888 1881",
    "8881881",
    "192.168.14.27",
    "2001:db8:85a3::8a2e:370:7334",
    "742 Evergreen Terrace",
    "03/14/1985",
];

fn chat(id: &str, turns: &[(&str, &str)]) -> Value {
    json!({"id": id, "messages": turns.iter().map(|(r, c)| json!({"role": r, "content": c})).collect::<Vec<_>>()})
}

fn sharegpt(id: &str, turns: &[(&str, &str)]) -> Value {
    json!({"id": id, "conversations": turns.iter().map(|(r, c)| json!({"from": r, "value": c})).collect::<Vec<_>>()})
}

/// Sixteen lines in three shapes: ten that survive, and one for each way a record is dropped.
fn mixed_dataset() -> (Vec<u8>, BTreeSet<String>) {
    let g1 = chat(
        "g1",
        &[
            (
                "client",
                "I keep waking at four and my mind races about work. You can write to me at dana.reyes@example.org with the worksheet.",
            ),
            (
                "therapist",
                "Thank you, I will send it. When the racing starts, what thoughts show up first?",
            ),
            (
                "client",
                "Mostly that I forgot something important and my manager will be disappointed in me.",
            ),
            (
                "therapist",
                "That sounds heavy to carry at night. What helped you settle on the better nights?",
            ),
        ],
    );
    let g2_turns = [
        (
            "human",
            "My sister and I argued again about caring for our mother, and now she will not answer. Call me on (415) 555-0199 after six.",
        ),
        (
            "gpt",
            "I will call then. It sounds painful to feel shut out while you are both worried about her.",
        ),
        (
            "human",
            "Yes, I think we are both scared and it comes out as anger at each other.",
        ),
        (
            "gpt",
            "Naming the fear underneath could be a gentle way to start the next conversation with her.",
        ),
    ];
    let g2 = sharegpt("g2", &g2_turns);
    let mut near = g2_turns;
    near[2].1 = "YES, I think we are both scared, and it comes out as anger at each other!";
    let lines: Vec<Value> = vec![
        g1.clone(),
        g2,
        json!({"id": "g3", "question": "The clinic asked for my SSN, 078-05-1120, on the intake form. Is it normal to feel uneasy sharing it?", "answer": "It is reasonable to feel uneasy. You can ask the clinic how the number is stored and whether another identifier would do; many clinics accept alternatives."}),
        json!("placeholder for a malformed line"),
        chat(
            "g4",
            &[
                (
                    "client",
                    "I paid for the session with my card 4012 8888 8888 1881 and then panicked about the cost.",
                ),
                (
                    "therapist",
                    "Money worries can spike quickly. What went through your mind right after paying?",
                ),
                (
                    "client",
                    "That I am wasting money on myself when the family needs it more.",
                ),
                (
                    "therapist",
                    "It sounds like caring for yourself feels selfish right now. Where did that idea come from?",
                ),
            ],
        ),
        chat(
            "g5",
            &[
                (
                    "client",
                    "I work from home and the VPN at 192.168.14.27 drops every hour, which makes me furious.",
                ),
                (
                    "therapist",
                    "Repeated interruptions are frustrating. What happens in your body when it drops?",
                ),
                (
                    "client",
                    "My jaw clenches and I start typing angry messages to the help desk.",
                ),
                (
                    "therapist",
                    "Noticing the clenched jaw is useful; it could be a cue to pause before you write.",
                ),
            ],
        ),
        sharegpt(
            "g6",
            &[
                (
                    "human",
                    "My smart speaker logs show 2001:db8:85a3::8a2e:370:7334 and I am convinced someone is watching me.",
                ),
                (
                    "gpt",
                    "That fear sounds frightening. What would help you feel a little safer at home today?",
                ),
                (
                    "human",
                    "Maybe asking my brother to look at the settings with me this weekend.",
                ),
                (
                    "gpt",
                    "That sounds like a caring, practical step, and you would not be facing it alone.",
                ),
            ],
        ),
        json!({"id": "x1", "text": "a record in no known shape"}),
        chat(
            "g7",
            &[
                (
                    "client",
                    "Since we moved to 742 Evergreen Terrace, Springfield, IL 62704 I have felt isolated.",
                ),
                (
                    "therapist",
                    "Moving can cut us off from familiar people. Who did you see often before the move?",
                ),
                (
                    "client",
                    "My running group, mostly. We met every Saturday morning by the river.",
                ),
                (
                    "therapist",
                    "Could you look for a running group near the new place, even just to try once?",
                ),
            ],
        ),
        json!({"id": "g8", "prompt": "I was born on 03/14/1985 and turning forty scares me more than I expected. Why might that be?", "response": "Milestone birthdays often invite us to compare our lives with what we imagined. It can help to notice which expectations feel heavy and whose voices they echo."}),
        {
            let mut dup = g1;
            dup["id"] = json!("dup-of-g1");
            dup
        },
        sharegpt("near-g2", &near),
        chat(
            "r1",
            &[
                ("client", "Hello there, I need help."),
                ("robot", "beep boop"),
            ],
        ),
        chat("low1", &[("client", "ok ok ok ok ok ok ok ok")]),
        json!({"id": "g9", "instruction": "Suggest one grounding exercise for a client who feels panicky on the bus.", "output": "Try the five-four-three-two-one exercise: name five things you see, four you can touch, three you hear, two you smell and one you taste, breathing slowly between each."}),
        chat(
            "g10",
            &[
                (
                    "client",
                    "The app updated to version 1.2.3.4 and my order 4012888888881882 for the sleep lamp is late again.",
                ),
                (
                    "therapist",
                    "Small hassles pile up. How has your sleep been while you wait for the lamp?",
                ),
                (
                    "client",
                    "Patchy. I wake around three most nights and scroll on my phone.",
                ),
                (
                    "therapist",
                    "Scrolling can keep the mind alert. What might you try instead when you wake?",
                ),
            ],
        ),
    ];
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if i == 3 {
            out.extend_from_slice(b"{\"id\": \"broken\", \"messages\": [\n");
            continue;
        }
        serde_json::to_writer(&mut out, line).unwrap();
        out.push(b'\n');
    }
    let kept = ["g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9", "g10"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    (out, kept)
}

/// Runs the mixed dataset and returns (execution, report, jsonl, chat_jsonl, csv).
async fn run_mixed(app: &App) -> (Value, Value, String, String, String) {
    let (dataset, _) = mixed_dataset();
    let (status, body) = app.upload("application/x-ndjson", dataset.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["records"], 16);
    assert_eq!(body["data"]["bytes"], dataset.len());
    assert_eq!(body["data"]["format"], "ndjson");
    let id = app
        .start_execution(&body["data"]["dataset_id"], json!({"shard_size": 4}))
        .await;
    let execution = app.wait_execution(&id, Duration::from_secs(120)).await;
    assert_eq!(execution["status"], "completed", "{execution}");
    let (status, report) = app
        .admin("GET", &format!("/api/v1/pipeline/{id}/report"), None)
        .await;
    assert_eq!(status, 200, "{report}");
    let mut files = Vec::new();
    for format in ["jsonl", "chat_jsonl", "csv"] {
        let (status, text) = app.results(&id, format).await;
        assert_eq!(status, 200, "{format}: {text}");
        files.push(text);
    }
    let csv = files.pop().unwrap();
    let chat = files.pop().unwrap();
    let jsonl = files.pop().unwrap();
    (execution, report["data"].clone(), jsonl, chat, csv)
}

fn assert_mixed_outputs(report: &Value, jsonl: &str, chat: &str, csv: &str) {
    let (_, kept) = mixed_dataset();
    let ids: BTreeSet<String> = jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, kept, "exported ids");
    assert_eq!(chat.lines().count(), 10);
    for line in chat.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        for m in v["messages"].as_array().unwrap() {
            assert!(
                ["user", "assistant", "system"].contains(&m["role"].as_str().unwrap()),
                "{line}"
            );
        }
    }
    assert_eq!(
        csv.lines().next().unwrap(),
        "id,source,turns,quality_score,token_estimate,messages"
    );
    for text in [jsonl, chat, csv] {
        for pii in PLANTED {
            assert!(!text.contains(pii), "{pii} leaked into an export");
        }
    }
    for placeholder in [
        "[EMAIL]",
        "[PHONE]",
        "[SSN]",
        "[CREDIT_CARD]",
        "[IP_ADDRESS]",
        "[ADDRESS]",
        "[DOB]",
    ] {
        assert!(jsonl.contains(placeholder), "{placeholder} missing");
    }
    // Look-alikes stay as they were.
    assert!(jsonl.contains("version 1.2.3.4"));
    assert!(jsonl.contains("order 4012888888881882"));

    let counts: Vec<(String, u64, u64)> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().to_string(),
                s["records_in"].as_u64().unwrap(),
                s["records_out"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64, u64)> = [
        ("ingestion", 16, 15),
        ("standardization", 15, 14),
        ("validation", 14, 13),
        ("processing", 13, 11),
        ("quality_assessment", 11, 10),
        ("export", 10, 10),
    ]
    .iter()
    .map(|(s, i, o)| (s.to_string(), *i, *o))
    .collect();
    assert_eq!(counts, want, "{report}");
    assert_eq!(
        report["pii"]["found_by_kind"],
        json!({"credit_card": 1, "date_of_birth": 1, "email": 2, "ipv4": 1, "ipv6": 1, "phone": 2, "ssn": 1, "street_address": 1}),
        "{report}"
    );
    assert_eq!(report["duplicates"], json!({"exact": 1, "near": 1}));
    let reasons = &report["rejects"]["by_reason"];
    assert_eq!(reasons["ingestion.malformed_json"], 1, "{reasons}");
    assert_eq!(reasons["standardization.unrecognised"], 1, "{reasons}");
    assert_eq!(reasons["validation.unknown_role"], 1, "{reasons}");
    assert_eq!(reasons["processing.exact_duplicate"], 1, "{reasons}");
    assert_eq!(reasons["processing.near_duplicate"], 1, "{reasons}");
    assert_eq!(reasons["quality_assessment.low_quality"], 1, "{reasons}");
    let items = report["rejects"]["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|r| r["stage"] == "ingestion" && r["line"] == 4),
        "{items:?}"
    );
    assert!(
        items
            .iter()
            .any(|r| r["stage"] == "standardization" && r["line"] == 8)
    );
    assert!(items.iter().any(|r| r["id"] == "low1"));
    let histogram: u64 = report["quality"]["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(histogram, 11);
    for cat in [
        "gender",
        "race_ethnicity",
        "age",
        "religion",
        "disability",
        "sexual_orientation",
    ] {
        assert!(
            report["bias"]["by_category"][cat]["mean"].is_number(),
            "{cat}"
        );
    }
}

/// Removes run-specific values (ids, times, scores' float noise is deterministic) so two runs
/// of the same data compare equal.
fn comparable(jsonl: &str) -> Vec<Value> {
    jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn mixed_dataset_through_stage_workers_gives_exact_outputs_in_both_modes() {
    let mut dist = App::start(Mode::Distributed).await;
    dist.start_stage_workers(1).await;

    // Follow the execution's stage events over the WebSocket while it runs.
    let url = dist.ws_url(&format!("/ws/pipeline/updates?token={}", dist.admin_token));
    let (mut ws, _) = connect_async(url).await.expect("websocket connects");
    let (execution, report, jsonl, chat, csv) = run_mixed(&dist).await;
    assert_mixed_outputs(&report, &jsonl, &chat, &csv);
    let id = execution["execution_id"].as_str().unwrap().to_string();
    let containers = run_containers(&dist).await;

    let mut completed = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(Message::Text(text))) = ws.next().await {
            let ev: Value = serde_json::from_str(&text).unwrap();
            if ev["data"]["execution_id"] != id.as_str() {
                continue;
            }
            if ev["type"] == "stage.completed" {
                completed.push(ev["data"]["stage"].as_str().unwrap().to_string());
            }
            if ev["type"] == "pipeline.completed" {
                break;
            }
        }
    })
    .await
    .expect("pipeline.completed arrives");
    assert_eq!(completed, stage_names(), "stage.completed events in order");

    // Each stage ran on its own worker process, recorded per stage.
    let (_, progress) = dist
        .admin(
            "GET",
            &format!("/api/v1/pipeline/{id}/agent-progress"),
            None,
        )
        .await;
    let stages = progress["data"]["stages"].as_array().unwrap();
    assert_eq!(progress["data"]["progress"], 100);
    let mut agents = BTreeSet::new();
    for (s, name) in stages.iter().zip(stage_names()) {
        assert_eq!(s["stage"], *name);
        assert_eq!(s["status"], "completed", "{s}");
        agents.insert(s["agent_id"].as_str().expect("agent recorded").to_string());
    }
    assert_eq!(agents.len(), 6, "one worker process per stage");
    assert_eq!(stages[1]["shards"], 4, "15 records in shards of 4");

    // The same dataset in single-node mode gives identical files.
    let single = App::start(Mode::SingleNode).await;
    let (_, report2, jsonl2, chat2, csv2) = run_mixed(&single).await;
    assert_mixed_outputs(&report2, &jsonl2, &chat2, &csv2);
    assert_eq!(comparable(&jsonl), comparable(&jsonl2));
    assert_eq!(chat, chat2);
    assert_eq!(csv, csv2);
    assert_eq!(report["pii"], report2["pii"]);
    assert_eq!(report["quality"], report2["quality"]);
    let containers2 = run_containers(&single).await;
    for (a, b) in containers.iter().zip(&containers2) {
        assert_eq!(comparable(a), comparable(b));
    }
}

/// The other two containers: a question/answer CSV (with a ragged row) and a JSON array in
/// three shapes (with an element that is not an object). Returns each one's exported JSONL.
async fn run_containers(app: &App) -> Vec<String> {
    let csv = b"question,answer\n\"How can I stop overthinking at night?\",\"Try writing worries down before bed, then tell yourself you will return to them tomorrow.\"\n\"Is it normal to feel tired after therapy?\",\"Yes, talking about hard things takes energy; plan something gentle afterwards.\"\nragged row without a second column\n".to_vec();
    let array = serde_json::to_vec(&json!([
        {"id": "a1", "messages": [{"role": "user", "content": "I get tense before exams every single time."}, {"role": "assistant", "content": "That is common; slow breathing before you start can ease it a little."}]},
        {"id": "a2", "conversations": [{"from": "human", "value": "My flatmate never cleans and I avoid saying anything."}, {"from": "gpt", "value": "Avoiding the conversation makes sense, yet the resentment grows; what would you like to say?"}]},
        "not a record",
        {"id": "a3", "prompt": "How do I support a friend who is grieving?", "response": "Stay present, listen more than you speak, and keep checking in after the first weeks."},
    ]))
    .unwrap();
    let mut exports = Vec::new();
    for (content_type, body, kept) in [("text/csv", csv, 2), ("application/json", array, 3)] {
        let id = execute(app, content_type, body, json!({"shard_size": 2})).await;
        let done = app.wait_execution(&id, Duration::from_secs(120)).await;
        assert_eq!(done["status"], "completed", "{done}");
        let (_, report) = app
            .admin("GET", &format!("/api/v1/pipeline/{id}/report"), None)
            .await;
        assert_eq!(
            report["data"]["rejects"]["by_reason"]["ingestion.malformed_csv"]
                .as_u64()
                .unwrap_or(0)
                + report["data"]["rejects"]["by_reason"]["ingestion.not_an_object"]
                    .as_u64()
                    .unwrap_or(0),
            1,
            "{report}"
        );
        let (_, jsonl) = app.results(&id, "jsonl").await;
        assert_eq!(jsonl.lines().count(), kept, "{content_type}: {jsonl}");
        exports.push(jsonl);
    }
    exports
}

/// Runs `dataset` to completion and returns the execution id.
async fn execute(app: &App, content_type: &str, dataset: Vec<u8>, options: Value) -> String {
    let (status, body) = app.upload(content_type, dataset).await;
    assert_eq!(status, 201, "{body}");
    app.start_execution(&body["data"]["dataset_id"], options)
        .await
}

#[tokio::test]
async fn a_stage_worker_killed_mid_shard_changes_nothing_in_the_outputs() {
    let dataset = crate::helpers::synth::ndjson(7, 12_000);
    let options = json!({"shard_size": 2000});

    // The reference: the same data on a single node, nothing killed.
    let single = App::start(Mode::SingleNode).await;
    let reference = execute(
        &single,
        "application/x-ndjson",
        dataset.clone(),
        options.clone(),
    )
    .await;
    let done = single
        .wait_execution(&reference, Duration::from_secs(300))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, want) = single.results(&reference, "jsonl").await;
    assert!(want.lines().count() > 10_000, "most records survive");

    let mut app = App::start_with(
        Mode::Distributed,
        &[
            ("MCP_WORKER_HEARTBEAT_MS", "1000"),
            ("MCP_WORKER_MISSED_HEARTBEATS", "2"),
        ],
    )
    .await;
    app.start_stage_workers(1).await;
    let url = app.ws_url(&format!("/ws/tasks/progress?token={}", app.admin_token));
    let (mut ws, _) = connect_async(url).await.expect("websocket connects");
    let id = execute(&app, "application/x-ndjson", dataset, options).await;

    // SIGKILL the processing worker as soon as it starts a shard of this execution. Until
    // then, earlier stages report progress at least every 1,000 records.
    let mut progress_reports = 0;
    tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(Ok(Message::Text(text))) = ws.next().await {
            let ev: Value = serde_json::from_str(&text).unwrap();
            if ev["type"] == "task.progress" && ev["data"]["execution_id"] == id.as_str() {
                assert!(ev["data"]["records_done"].as_u64().unwrap() > 0, "{ev}");
                progress_reports += 1;
            }
            if ev["type"] == "task.started"
                && ev["data"]["execution_id"] == id.as_str()
                && ev["data"]["stage"] == "processing"
            {
                return;
            }
        }
        panic!("the WebSocket closed");
    })
    .await
    .expect("a processing shard starts");
    // Ingestion alone reads 12,000 records in one shard: at least 12 reports.
    assert!(progress_reports >= 12, "{progress_reports} progress events");
    // The stage workers were started in stage order and the processing one is fourth; the
    // helper kills the most recent, so stop the two after it first and restart them.
    app.kill_worker(); // export
    app.kill_worker(); // quality
    app.kill_worker(); // processing, mid-shard
    app.start_worker_binary("mcp-worker-processing", &[]);
    app.start_worker_binary("mcp-worker-quality", &[]);
    app.start_worker_binary("mcp-worker-export", &[]);

    let done = app.wait_execution(&id, Duration::from_secs(300)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, got) = app.results(&id, "jsonl").await;
    assert_eq!(
        comparable(&got),
        comparable(&want),
        "identical outputs after the kill"
    );
    let redelivered = app.sql(&format!(
        "SELECT count(*) FROM tasks WHERE execution_id = '{id}' AND stage = 'processing' AND attempt > 1"
    ));
    assert_ne!(redelivered.trim(), "0", "the killed shard ran again");
}

#[tokio::test]
async fn pipeline_bad_input_and_edge_cases() {
    let app = App::start_with(Mode::SingleNode, &[("MCP_MAX_DATASET_BYTES", "4096")]).await;
    let execute_with =
        |body: Value| app.admin("POST", "/api/v1/pipeline/agent-execute", Some(body));

    // Over the dataset limit: 413, nothing stored.
    let (status, body) = app.upload("application/x-ndjson", vec![b' '; 5000]).await;
    assert_eq!(status, 413, "{body}");
    // Unsupported container: 415 listing the supported ones.
    let (status, body) = app.upload("application/xml", b"<a/>".to_vec()).await;
    assert_eq!(status, 415, "{body}");
    assert!(body["error"]["details"]["supported"].is_array());
    // A JSON dataset must be an array.
    let (status, body) = app.upload("application/json", b"{\"a\": 1}".to_vec()).await;
    assert_eq!(status, 422, "{body}");

    // Unknown source_format and export format, options out of range: 422 naming the field.
    let records = json!([{"question": "Is it okay to rest?", "answer": "Yes, rest is part of recovery and helps you think clearly."}]);
    let (status, body) = execute_with(json!({"records": records, "source_format": "xml"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"]["field"], "source_format");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sharegpt"),
        "{body}"
    );
    let (status, body) =
        execute_with(json!({"records": records, "options": {"export_formats": ["parquet"]}})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["details"]["field"]
            .as_str()
            .unwrap()
            .starts_with("options.export_formats")
    );
    for (field, value) in [
        ("quality_threshold", json!(1.5)),
        ("bias_threshold", json!(-0.1)),
        ("near_duplicate_threshold", json!(0.5)),
        ("shard_size", json!(0)),
    ] {
        let (status, body) =
            execute_with(json!({"records": records, "options": {field: value}})).await;
        assert_eq!(status, 422, "{field}: {body}");
        assert_eq!(
            body["error"]["details"]["field"],
            format!("options.{field}")
        );
    }
    let (status, body) = execute_with(json!({"dataset_id": uuid::Uuid::now_v7()})).await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = execute_with(json!({})).await;
    assert_eq!(status, 422);
    let (_, list) = app.admin("GET", "/api/v1/tasks", None).await;
    assert_eq!(list["count"], 0, "rejected requests created nothing");

    // wait=true answers 200 with the results; an empty dataset completes with zero records.
    let (status, body) =
        execute_with(json!({"records": [], "wait": true, "wait_timeout_ms": 60000})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "completed");
    assert_eq!(body["data"]["results"]["records_out"], 0);
    let id = body["data"]["execution_id"].as_str().unwrap();
    let (status, text) = app.results(id, "csv").await;
    assert_eq!(status, 200);
    assert_eq!(text.lines().count(), 1, "only the header");
    let (status, body) = app
        .call(
            "GET",
            &format!("/api/v1/pipeline/{id}/results?format=xml"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(status, 422, "{body}");

    // The other containers: CSV and a JSON array, with a malformed CSV row kept out by line.
    let csv = b"question,answer\n\"How do I stop overthinking at night?\",\"Try writing worries down before bed, then tell yourself you will return to them tomorrow.\"\nonly-one-column\n".to_vec();
    let (status, body) = app.upload("text/csv", csv).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["records"], 2);
    let (status, body) = execute_with(
        json!({"dataset_id": body["data"]["dataset_id"], "source_format": "qa_csv", "wait": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["data"]["execution_id"].as_str().unwrap().to_string();
    let (_, report) = app
        .admin("GET", &format!("/api/v1/pipeline/{id}/report"), None)
        .await;
    assert_eq!(report["data"]["records_out"], 1, "{report}");
    assert_eq!(report["data"]["rejects"]["items"][0]["line"], 3, "{report}");

    let array = serde_json::to_vec(&json!([
        {"conversations": [{"from": "human", "value": "I feel tense before exams every time."}, {"from": "gpt", "value": "That is common; slow breathing before you start can ease it a little."}]},
        42
    ]))
    .unwrap();
    let (status, body) = app.upload("application/json", array).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["records"], 2);
    let (status, body) =
        execute_with(json!({"dataset_id": body["data"]["dataset_id"], "wait": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["results"]["records_out"], 1, "{body}");

    // wait=false answers 202; cancel ends it, and a second cancel is a 409 naming the state.
    let (status, body) = execute_with(json!({"records": records})).await;
    assert_eq!(status, 202, "{body}");
    let id = body["data"]["execution_id"].as_str().unwrap().to_string();
    let (status, body) = app
        .admin("POST", &format!("/api/v1/pipeline/{id}/cancel"), None)
        .await;
    if status == 200 {
        assert_eq!(body["data"]["status"], "cancelled");
        let (status, body) = app
            .admin("POST", &format!("/api/v1/pipeline/{id}/cancel"), None)
            .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["details"]["current_status"], "cancelled");
        let (status, _) = app.results(&id, "jsonl").await;
        assert_eq!(status, 409);
    } else {
        // It had already completed: cancelling a finished execution is the 409.
        assert_eq!(status, 409, "{body}");
    }

    // A shard that cannot succeed fails the execution, naming the stage and the reason.
    let (status, body) = app
        .upload(
            "application/x-ndjson",
            b"{\"question\": \"a\", \"answer\": \"b\"}\n".to_vec(),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let dataset = body["data"]["dataset_id"].as_str().unwrap().to_string();
    std::fs::remove_file(
        app.dir
            .path()
            .join(format!("artifacts/datasets/{dataset}.ndjson")),
    )
    .unwrap();
    let (status, body) = execute_with(json!({"dataset_id": dataset, "wait": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "failed", "{body}");
    let error = body["data"]["error"].as_str().unwrap();
    assert!(
        error.contains("ingestion") && error.contains("missing"),
        "{error}"
    );
    let id = body["data"]["execution_id"].as_str().unwrap();
    let (_, progress) = app
        .admin(
            "GET",
            &format!("/api/v1/pipeline/{id}/agent-progress"),
            None,
        )
        .await;
    assert_eq!(
        progress["data"]["stages"][0]["status"], "failed",
        "{progress}"
    );
    assert_eq!(progress["data"]["stages"][1]["status"], "pending");
    let (status, _) = app.results(id, "jsonl").await;
    assert_eq!(status, 409);

    let (status, _) = app
        .admin(
            "GET",
            &format!("/api/v1/pipeline/{}", uuid::Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn batch_of_executions_defaults_to_low_priority_and_rejects_by_index() {
    let app = App::start(Mode::SingleNode).await;
    let records = json!([{"prompt": "What helps with a racing heart?", "response": "Slow exhale breathing and naming five things you can see can calm it."}]);
    let (status, body) = app
        .admin("POST", "/api/v1/pipeline/batch", Some(json!({"executions": [{"records": records}, {"records": records, "options": {"pii": "shred"}}]})))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["details"]["field"], "executions[1].options.pii",
        "{body}"
    );

    let (status, body) = app
        .admin("POST", "/api/v1/pipeline/batch", Some(json!({"executions": [{"records": records}, {"records": records, "priority": "high"}]})))
        .await;
    assert_eq!(status, 202, "{body}");
    let ids: Vec<String> = body["data"]["execution_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let first = app.wait_execution(&ids[0], Duration::from_secs(60)).await;
    let second = app.wait_execution(&ids[1], Duration::from_secs(60)).await;
    assert_eq!(
        (first["priority"].as_str(), second["priority"].as_str()),
        (Some("low"), Some("high"))
    );
    assert_eq!(first["status"], "completed");
}

#[tokio::test]
async fn the_s3_artifact_store_gives_the_same_outputs() {
    let s3 = crate::helpers::servers::S3::start("mcp-artifacts").await;
    let env = s3.env("cluster-a");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut app = App::start_with(Mode::Distributed, &env).await;
    let (status, ready) = app.call("GET", "/api/v1/ready", None, None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["data"]["artifacts"], "ok");
    app.start_stage_workers(1).await;
    let (execution, report, jsonl, chat, csv) = run_mixed(&app).await;
    assert_mixed_outputs(&report, &jsonl, &chat, &csv);

    // Everything landed in the bucket under the prefix, nothing on local disk.
    let id = execution["execution_id"].as_str().unwrap();
    let keys = s3.keys("cluster-a/").await;
    assert!(
        keys.iter().any(|k| k.starts_with("cluster-a/datasets/")),
        "{keys:?}"
    );
    for file in ["records.jsonl", "chat.jsonl", "records.csv", "report.json"] {
        let key = format!("cluster-a/executions/{id}/export/{file}");
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert!(!app.dir.path().join("artifacts").exists());
    // Every object is sealed: the bucket never holds conversation text in clear.
    let mut read = 0;
    for key in &keys {
        let Some(bytes) = s3.object(key).await else {
            continue;
        };
        read += 1;
        assert!(bytes.starts_with(b"MCPSEAL1"), "{key} is not sealed");
        assert!(
            !String::from_utf8_lossy(&bytes).contains("messages"),
            "{key} holds records in clear"
        );
    }
    assert!(
        read >= 4,
        "the dataset and the exports were read back: {read} of {keys:?}"
    );
}

#[tokio::test]
async fn cancel_stops_the_remaining_shards() {
    let app = App::start(Mode::SingleNode).await;
    let url = app.ws_url(&format!("/ws/pipeline/updates?token={}", app.admin_token));
    let (mut ws, _) = connect_async(url).await.expect("websocket connects");
    let id = execute(
        &app,
        "application/x-ndjson",
        crate::helpers::synth::ndjson(11, 20_000),
        json!({"shard_size": 500}),
    )
    .await;
    // Let it get going (ingestion hands 40 shards to standardization), then cancel.
    wait_for(
        "standardization to start",
        Duration::from_secs(120),
        || async {
            let (_, p) = app
                .admin(
                    "GET",
                    &format!("/api/v1/pipeline/{id}/agent-progress"),
                    None,
                )
                .await;
            match p["data"]["current_stage"].as_str() {
                Some("ingestion") | None => Err(p.to_string()),
                Some(_) => Ok(()),
            }
        },
    )
    .await;
    let (status, body) = app
        .admin("POST", &format!("/api/v1/pipeline/{id}/cancel"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "cancelled");
    let stage_at_cancel = body["data"]["current_stage"].clone();

    // Every shard task ends (cancelled, or completed if it was already finishing), and the
    // execution never moves to another stage.
    wait_for(
        "every shard task to end",
        Duration::from_secs(60),
        || async {
            let (_, list) = app.admin("GET", "/api/v1/tasks?limit=1000", None).await;
            let open: Vec<_> = list["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["execution_id"] == id.as_str())
                .filter(|t| !["cancelled", "completed"].contains(&t["status"].as_str().unwrap()))
                .map(|t| t["status"].clone())
                .collect();
            if open.is_empty() {
                Ok(())
            } else {
                Err(format!("{open:?}"))
            }
        },
    )
    .await;
    let (_, after) = app
        .admin("GET", &format!("/api/v1/pipeline/{id}"), None)
        .await;
    assert_eq!(after["data"]["status"], "cancelled");
    assert_eq!(
        after["data"]["current_stage"], stage_at_cancel,
        "no stage advanced after the cancel"
    );
    let (status, _) = app.results(&id, "jsonl").await;
    assert_eq!(status, 409);
    let (cancelled, _) =
        crate::helpers::ws::next_of_type(&mut ws, "pipeline.cancelled", Duration::from_secs(10))
            .await;
    assert_eq!(cancelled["data"]["execution_id"], id.as_str());
}

#[tokio::test]
async fn idempotency_keys_replay_executions_singly_and_in_batches() {
    // PostgreSQL, so the executions can be counted where they are stored.
    let app = App::start(Mode::Distributed).await;
    let executions = || -> i64 {
        app.sql("SELECT count(*) FROM pipeline_executions")
            .parse()
            .unwrap()
    };
    let records = json!([{"question": "How do I wind down at night?", "answer": "Dim the lights an hour before bed and keep the phone in another room."}]);
    let keyed = |key: &str| json!({"records": records, "idempotency_key": key});

    // A repeated single execute answers as the first did (202 without `wait`, 200 with it),
    // with the execution the first one started: how long the caller waits is not part of the
    // request.
    let (status, first) = app
        .admin(
            "POST",
            "/api/v1/pipeline/agent-execute",
            Some(keyed("run-1")),
        )
        .await;
    assert_eq!(status, 202, "{first}");
    let id = first["data"]["execution_id"].as_str().unwrap().to_string();
    let (status, again) = app
        .admin(
            "POST",
            "/api/v1/pipeline/agent-execute",
            Some(keyed("run-1")),
        )
        .await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["data"]["execution_id"], id.as_str(), "{again}");
    let mut waiting = keyed("run-1");
    waiting["wait"] = json!(true);
    waiting["wait_timeout_ms"] = json!(1);
    let (status, again) = app
        .admin("POST", "/api/v1/pipeline/agent-execute", Some(waiting))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["data"]["execution_id"], id.as_str(), "{again}");
    assert_eq!(executions(), 1);

    // Identical requests racing make one execution, and every one of them gets it.
    let racing = futures::future::join_all((0..6).map(|_| {
        app.admin(
            "POST",
            "/api/v1/pipeline/agent-execute",
            Some(keyed("race")),
        )
    }))
    .await;
    let mut raced: Vec<&Value> = racing
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 202, "{body}");
            &body["data"]["execution_id"]
        })
        .collect();
    raced.dedup();
    assert_eq!(raced.len(), 1, "{racing:?}");
    assert_eq!(executions(), 2);

    // The same key with another request is refused, and starts nothing.
    let mut other = keyed("run-1");
    other["options"] = json!({"pii": "reject"});
    let (status, refused) = app
        .admin("POST", "/api/v1/pipeline/agent-execute", Some(other))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(
        refused["error"]["code"], "idempotency_key_reused",
        "{refused}"
    );
    assert_eq!(executions(), 2);
    let (status, bad) = app
        .admin(
            "POST",
            "/api/v1/pipeline/agent-execute",
            Some(keyed(&"k".repeat(201))),
        )
        .await;
    assert_eq!(status, 422, "{bad}");
    assert_eq!(bad["error"]["details"]["field"], "idempotency_key", "{bad}");

    // In a batch: a key repeated within it, and the single execute's key (with the priority
    // that execution got), map to the executions they name.
    let mut high = keyed("run-1");
    high["priority"] = json!("high");
    let batch = json!({"executions": [keyed("b-1"), keyed("b-2"), keyed("b-1"), high]});
    let (status, body) = app
        .admin("POST", "/api/v1/pipeline/batch", Some(batch.clone()))
        .await;
    assert_eq!(status, 202, "{body}");
    let ids = body["data"]["execution_ids"].clone();
    assert_eq!(ids.as_array().unwrap().len(), 4, "{body}");
    assert_eq!(ids[0], ids[2], "{body}");
    assert_ne!(ids[0], ids[1], "{body}");
    assert_eq!(ids[3], id.as_str(), "{body}");
    assert_eq!(executions(), 4);

    // The whole batch again: the same ids at the same indexes, nothing new.
    let (status, body) = app
        .admin("POST", "/api/v1/pipeline/batch", Some(batch))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["execution_ids"], ids, "{body}");
    assert_eq!(executions(), 4);

    // A reused key with another body refuses the batch by index, before anything starts.
    let mut changed = keyed("b-2");
    changed["options"] = json!({"quality_threshold": 0.9});
    let (status, body) = app
        .admin(
            "POST",
            "/api/v1/pipeline/batch",
            Some(json!({"executions": [keyed("b-3"), changed]})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"]["details"]["field"], "executions[1].idempotency_key",
        "{body}"
    );
    let mut urgent = keyed("b-4");
    urgent["priority"] = json!("critical");
    let (status, body) = app
        .admin(
            "POST",
            "/api/v1/pipeline/batch",
            Some(json!({"executions": [keyed("b-4"), urgent]})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"]["details"]["field"], "executions[1].idempotency_key",
        "{body}"
    );
    assert_eq!(executions(), 4);
    assert_eq!(
        app.sql("SELECT count(*) FROM pipeline_executions WHERE idempotency_key IN ('b-3', 'b-4')"),
        "0"
    );

    // Batch items without a priority got the batch default; the replayed one kept its own.
    for (index, want) in [(0, "low"), (1, "low"), (3, "high")] {
        let path = format!("/api/v1/pipeline/{}", ids[index].as_str().unwrap());
        let (status, e) = app.admin("GET", &path, None).await;
        assert_eq!(status, 200, "{e}");
        assert_eq!(e["data"]["priority"], want, "{e}");
        assert!(e["data"]["idempotency_key"].is_string(), "{e}");
    }
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

/// Every file under `dir`.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            if entry.path().is_dir() {
                dirs.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files
}

#[tokio::test]
async fn conversation_data_is_encrypted_at_rest_and_read_back_through_the_store() {
    const CANARY: &str = "lighthouse-keeper-CANARY-7f3a";
    let mut app = App::start(Mode::SingleNode).await;
    // Realistic conversations, each carrying the canary in its first turn.
    let dataset = String::from_utf8(crate::helpers::synth::ndjson(3, 300))
        .unwrap()
        .replace("\"content\":\"", &format!("\"content\":\"{CANARY} "));
    assert!(dataset.contains(CANARY));
    let id = execute(
        &app,
        "application/x-ndjson",
        dataset.into_bytes(),
        json!({"shard_size": 50}),
    )
    .await;
    let done = app.wait_execution(&id, Duration::from_secs(180)).await;
    assert_eq!(done["status"], "completed", "{done}");
    // Readers get the data in clear, through the store.
    for format in ["jsonl", "chat_jsonl", "csv"] {
        let (status, text) = app.results(&id, format).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains(CANARY), "{format} export reads back in clear");
    }

    // On disk, nothing is: not the dataset, the shards, the exports, the report, the staging
    // area, nor the database beside them.
    let leaks = files_containing(app.dir.path(), CANARY.as_bytes());
    let leaks: Vec<_> = leaks
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "log"))
        .collect();
    assert!(
        leaks.is_empty(),
        "conversation text in clear on disk: {leaks:?}"
    );
    let artifacts = app.dir.path().join("artifacts");
    let stored = files_under(&artifacts);
    assert!(stored.len() > 10, "{stored:?}");
    for file in &stored {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            bytes.starts_with(b"MCPSEAL1"),
            "{} is not sealed",
            file.display()
        );
    }

    // Rotate: a new key first in the ring; the server re-encrypts what the old key sealed in the
    // background, `keys status` counts what is left, and everything still reads.
    let (ok, entry) = app.run_api_command(&["keys", "generate", "--id", "k2"]);
    assert!(ok, "{entry}");
    app.restart_api_with(&[("MCP_ENCRYPTION_KEYS", entry.trim())])
        .await;
    let after = wait_for(
        "the background re-encryption",
        Duration::from_secs(60),
        || async {
            let (ok, status) = app.run_api_command(&["keys", "status"]);
            let old = status
                .lines()
                .any(|l| l.starts_with("artifacts sealed by") && !l.contains("by k2"));
            if ok && !old { Ok(status) } else { Err(status) }
        },
    )
    .await;
    assert!(after.contains("artifacts sealed by k2"), "{after}");
    for file in files_under(&artifacts) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            bytes.starts_with(b"MCPSEAL1\x02k2"),
            "{} is not sealed by k2",
            file.display()
        );
    }
    let (status, text) = app.results(&id, "jsonl").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(CANARY), "re-encrypted exports still read");
    assert!(files_containing(&artifacts, CANARY.as_bytes()).is_empty());
}

#[tokio::test]
async fn retention_purges_datasets_stage_outputs_exports_results_and_task_errors() {
    // Data finished longer ago than ~8.6 s is purged every second.
    let app = App::start_with(
        Mode::SingleNode,
        &[
            ("AGENT_DATA_RETENTION_DAYS", "0.0001"),
            ("MCP_RETENTION_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let (status, body) = app
        .upload("application/x-ndjson", crate::helpers::synth::ndjson(9, 60))
        .await;
    assert_eq!(status, 201, "{body}");
    let dataset = body["data"]["dataset_id"].as_str().unwrap().to_string();
    let id = app
        .start_execution(&body["data"]["dataset_id"], json!({"shard_size": 20}))
        .await;
    let done = app.wait_execution(&id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["results"].is_object(), "{done}");
    let failing = app
        .create_task(json!({"type": "generic", "payload": {"fail": true}, "max_attempts": 1}))
        .await;
    let failing = failing["id"].as_str().unwrap().to_string();
    let dead = app
        .wait_status(&failing, "dead", Duration::from_secs(30))
        .await;
    assert!(dead["error"].is_string(), "{dead}");
    let artifacts = app.dir.path().join("artifacts");
    let execution_dir = artifacts.join(format!("executions/{id}"));
    let dataset_file = artifacts.join(format!("datasets/{dataset}.ndjson"));
    assert!(dataset_file.exists());
    assert!(
        files_under(&execution_dir).len() > 5,
        "stage outputs and exports are stored"
    );

    wait_for(
        "the execution's data to be purged",
        Duration::from_secs(60),
        || async {
            let (_, b) = app
                .admin("GET", &format!("/api/v1/pipeline/{id}"), None)
                .await;
            let left = files_under(&execution_dir).len();
            if b["data"]["results"].is_null() && left == 0 && !dataset_file.exists() {
                Ok(())
            } else {
                Err(format!(
                    "{left} files left, dataset {}: {b}",
                    dataset_file.exists()
                ))
            }
        },
    )
    .await;
    let (status, _) = app.results(&id, "jsonl").await;
    assert_eq!(status, 404, "the export is gone");
    let (status, _) = app
        .admin("GET", &format!("/api/v1/pipeline/{id}/report"), None)
        .await;
    assert_eq!(status, 404, "the report is gone");
    let task = wait_for(
        "the dead task's error to be purged",
        Duration::from_secs(30),
        || async {
            let (_, b) = app
                .admin("GET", &format!("/api/v1/tasks/{failing}"), None)
                .await;
            if b["data"]["error"].is_null() && b["data"]["message"].is_null() {
                Ok(b["data"].clone())
            } else {
                Err(b.to_string())
            }
        },
    )
    .await;
    assert_eq!(task["status"], "dead", "the row itself stays");
    // Each pass that removed anything left its record in the audit trail, with the counts.
    let (_, b) = app
        .admin(
            "GET",
            "/api/v1/audit?action=retention.purge&limit=100",
            None,
        )
        .await;
    let passes = b["data"].as_array().unwrap().clone();
    let total = |k: &str| {
        passes
            .iter()
            .map(|r| r["details"][k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert!(
        total("executions") >= 1 && total("datasets") >= 1,
        "{passes:?}"
    );
    assert!(total("artifacts") >= 6, "{passes:?}");
    let (_, v) = app.admin("GET", "/api/v1/audit/verify", None).await;
    assert_eq!(v["data"]["valid"], true, "{v}");
}

/// Every stage but standardization, whose shards are left to an external agent.
const BUILTIN_EXCEPT_STANDARDIZATION: &str = "generic,stage_ingestion,stage_validation,stage_processing,stage_quality_assessment,stage_export";

/// A deployment whose built-in workers serve every stage but standardization.
async fn without_builtin_standardization(mode: Mode) -> App {
    match mode {
        Mode::SingleNode => {
            App::start_with(
                mode,
                &[("MCP_EMBEDDED_CAPABILITIES", BUILTIN_EXCEPT_STANDARDIZATION)],
            )
            .await
        }
        Mode::Distributed => {
            let mut app = App::start(mode).await;
            // The plain worker goes: it may serve every stage.
            app.kill_worker();
            for (stage, bin) in STAGES {
                if *stage != "standardization" {
                    app.start_worker_binary(bin, &[]);
                }
            }
            wait_for(
                "stage workers to register",
                Duration::from_secs(30),
                || async {
                    let mut missing = Vec::new();
                    for (stage, _) in STAGES.iter().filter(|(s, _)| *s != "standardization") {
                        let (_, found) = app
                            .admin(
                                "GET",
                                &format!("/api/v1/agents/discover?capability=stage_{stage}"),
                                None,
                            )
                            .await;
                        if found["count"].as_u64().unwrap_or(0) == 0 {
                            missing.push(*stage);
                        }
                    }
                    if missing.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("{missing:?}"))
                    }
                },
            )
            .await;
            app
        }
    }
}

/// The shard protocol's refusals, on a real shard: only the holding agent reads the input, a
/// line that is not a canonical record refuses the upload (naming the line), a completion
/// without output is refused, and a failed attempt goes back to the queue.
async fn shard_protocol_refusals(app: &App, probe: &str, key: &str) {
    let (code, task) = app.claim(probe, key, 20_000).await;
    assert_eq!(code, 200, "{task}");
    let task = &task["data"];
    assert_eq!(task["stage"], "standardization", "{task}");
    let id = task["id"].as_str().unwrap();
    let input_path = format!("/api/v1/tasks/{id}/shard/input");

    let resp = app
        .send("GET", &input_path, Some(&app.admin_token), None)
        .await;
    assert_eq!(resp.status().as_u16(), 403, "users do not run shards");

    let resp = app
        .http
        .get(format!("{}{input_path}", app.base))
        .header("authorization", format!("Agent {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let total: usize = resp.headers()["x-records-total"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let text = resp.text().await.unwrap();
    assert_eq!(text.lines().count(), total, "{text}");
    assert!(total > 0);
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(
            v["line"].is_u64() && v["raw"].is_object(),
            "raw records in clear: {line}"
        );
    }

    let output = |body: &'static str, content_type: &'static str| {
        app.http
            .put(format!("{}/api/v1/tasks/{id}/shard/output", app.base))
            .header("authorization", format!("Agent {key}"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let good = r#"{"id": "a", "source": "s", "messages": [{"role": "user", "content": "hi"}], "metadata": {}}"#;
    let bad: &'static str = Box::leak(format!("{good}\n{{\"id\": \"b\"}}\n").into_boxed_str());
    let resp = output(bad, "application/x-ndjson").await.unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed", "{body}");
    assert_eq!(body["error"]["details"]["line"], 2, "{body}");
    let resp = output(good, "application/json").await.unwrap();
    assert_eq!(resp.status().as_u16(), 415);

    // Nothing was stored, so there is nothing to complete with.
    let (code, body) = app
        .as_agent(
            "POST",
            &format!("/api/v1/tasks/{id}/complete"),
            key,
            Some(json!({"result": {}})),
        )
        .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shard/output"),
        "{body}"
    );

    let (code, body) = app
        .as_agent(
            "POST",
            &format!("/api/v1/tasks/{id}/fail"),
            key,
            Some(json!({"error": "probe done", "retryable": true})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["status"], "failed", "{body}");
    let (code, body) = app
        .admin("DELETE", &format!("/api/v1/agents/{probe}"), None)
        .await;
    assert_eq!(code, 200, "{body}");
}

/// A six-stage run whose standardization stage is the example Python agent
/// (`docs/examples/stage_agent.py`), with no built-in worker serving that stage: the outputs and
/// report are exactly those of the built-in stage, and the shards were the agent's.
async fn standardization_by_the_example_agent(mode: Mode) {
    let app = without_builtin_standardization(mode).await;
    let register = |name: &'static str| {
        app.register_agent(json!({"name": name, "type": "data_processor",
                                   "capabilities": ["stage_standardization"]}))
    };
    let (probe, probe_key) = register("probe").await;
    let (agent, key) = register("py-standardizer").await;

    let (dataset, _) = mixed_dataset();
    let (status, body) = app.upload("application/x-ndjson", dataset).await;
    assert_eq!(status, 201, "{body}");
    let id = app
        .start_execution(&body["data"]["dataset_id"], json!({"shard_size": 4}))
        .await;
    shard_protocol_refusals(&app, &probe, &probe_key).await;

    // 15 records in shards of 4: the agent runs the four shards, then exits.
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/stage_agent.py");
    let child = crate::helpers::servers::python_script(&script)
        .env("MCP_URL", &app.base)
        .env("MCP_AGENT_ID", &agent)
        .env("MCP_AGENT_KEY", &key)
        .env("MCP_STAGE_SHARDS", "4")
        .env("HEARTBEAT_SECONDS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("stage_agent.py ran its four shards within 120 s")
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "stage_agent.py: {}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("stage_agent.py: OK (4 shards)"),
        "{stdout}\n{stderr}"
    );

    let execution = app.wait_execution(&id, Duration::from_secs(120)).await;
    assert_eq!(execution["status"], "completed", "{execution}");
    let (_, progress) = app
        .admin(
            "GET",
            &format!("/api/v1/pipeline/{id}/agent-progress"),
            None,
        )
        .await;
    let standardization: Vec<&Value> = progress["data"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stage"] == "standardization")
        .collect();
    assert_eq!(standardization.len(), 1, "{progress}");
    assert_eq!(standardization[0]["status"], "completed", "{progress}");
    assert_eq!(standardization[0]["agent_id"], agent.as_str(), "{progress}");

    let (status, report) = app
        .admin("GET", &format!("/api/v1/pipeline/{id}/report"), None)
        .await;
    assert_eq!(status, 200, "{report}");
    let mut files = Vec::new();
    for format in ["jsonl", "chat_jsonl", "csv"] {
        let (status, text) = app.results(&id, format).await;
        assert_eq!(status, 200, "{format}: {text}");
        files.push(text);
    }
    // What the agent wrote went on through validation, processing, quality and export.
    for line in files[0].lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["metadata"]["standardized_by"], "stage_agent.py", "{line}");
    }
    assert_mixed_outputs(&report["data"], &files[0], &files[1], &files[2]);

    // The agent's output is sealed at rest like every artifact.
    let shard = app.dir.path().join(format!(
        "artifacts/executions/{id}/standardization/00000.jsonl"
    ));
    let stored = std::fs::read(&shard).unwrap();
    assert!(
        !String::from_utf8_lossy(&stored).contains("standardized_by"),
        "the shard is stored in clear"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_agent_runs_the_standardization_stage_single_node() {
    standardization_by_the_example_agent(Mode::SingleNode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_agent_runs_the_standardization_stage_distributed() {
    standardization_by_the_example_agent(Mode::Distributed).await;
}
