//! The typed task types run on built-in handlers on a fresh deployment: each completes with a
//! result computed from its input, a bad payload is refused at submit time naming the field, and
//! a typed task that requires other capabilities is left for an agent.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{App, Mode};

const DONE_WITHIN: Duration = Duration::from_secs(30);

fn conversation(question: &str, answer: &str) -> Value {
    json!({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
}

async fn run(app: &App, body: Value) -> Value {
    let task = app.create_task(body).await;
    let id = task["id"].as_str().unwrap().to_string();
    let done = app.wait_status(&id, "completed", DONE_WITHIN).await;
    done["result"].clone()
}

async fn every_typed_task_completes(mode: Mode) {
    let app = App::start(mode).await;

    // bias_detection: a generalising statement scores higher than a neutral mention.
    let result = run(
        &app,
        json!({"type": "bias_detection", "payload": {"records": [
            {"id": "neutral", "messages": [{"role": "user", "content": "My neighbour is an older woman who gardens."}]},
            {"id": "biased", "messages": [{"role": "user", "content": "Women are too emotional to be good leaders, they should stay home."}]},
        ]}}),
    )
    .await;
    let records = result["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{result}");
    let gender = |i: usize| records[i]["scores"]["gender"].as_f64().unwrap();
    assert!(gender(1) > gender(0), "{result}");
    assert!(
        records[1]["flagged"]
            .as_array()
            .unwrap()
            .contains(&json!("gender")),
        "{result}"
    );
    let text = run(
        &app,
        json!({"type": "bias_detection", "payload": {"text": "The weather is nice today."}}),
    )
    .await;
    assert_eq!(text["records"][0]["flagged"], json!([]), "{text}");

    // validation: PII redacted, a broken record rejected with its reason.
    let result = run(
        &app,
        json!({"type": "validation", "payload": {"records": [
            {"id": "a", "messages": [{"role": "user", "content": "Write to ann.lee@example.org please"}, {"role": "assistant", "content": "Done."}]},
            {"id": "b", "messages": [{"role": "robot", "content": "beep"}]},
        ]}}),
    )
    .await;
    assert_eq!(result["records_out"], 1, "{result}");
    assert_eq!(
        result["records"][0]["messages"][0]["content"],
        "Write to [EMAIL] please"
    );
    assert_eq!(result["pii_found"]["email"], 1, "{result}");
    assert_eq!(
        result["rejects"]["by_reason"]["unknown_role"], 1,
        "{result}"
    );
    let rejected = run(
        &app,
        json!({"type": "validation", "payload": {"pii": "reject", "records": [
            {"id": "a", "messages": [{"role": "user", "content": "Call me on 415-555-0134"}]},
        ]}}),
    )
    .await;
    assert_eq!(rejected["records_out"], 0, "{rejected}");

    // analysis: the repeated record is a duplicate of the first; scores depend on the text.
    let good = conversation(
        "How can I sleep better when I am anxious at night?",
        "Try a steady bedtime, keep screens out of the bedroom, and write your worries down before bed.",
    );
    let result = run(
        &app,
        json!({"type": "analysis", "payload": {"records": [good.clone(), good, conversation("hi", "...")]}}),
    )
    .await;
    assert_eq!(result["summary"]["records"], 3, "{result}");
    assert_eq!(result["summary"]["exact_duplicates"], 1, "{result}");
    assert_eq!(result["records"][1]["duplicate_of"], "record-1", "{result}");
    let score = |i: usize| result["records"][i]["quality_score"].as_f64().unwrap();
    assert!(score(0) > score(2), "{result}");

    // export: the records rendered in the asked format.
    let result = run(
        &app,
        json!({"type": "export", "payload": {"format": "csv", "records": [
            {"id": "r1", "messages": [{"role": "client", "content": "hello there"}]},
        ]}}),
    )
    .await;
    assert_eq!(result["content_type"], "text/csv", "{result}");
    let content = result["content"].as_str().unwrap();
    assert!(content.starts_with("id,source,turns"), "{content}");
    assert!(
        content.contains("r1") && content.contains("hello there"),
        "{content}"
    );

    // pipeline_processing without a stage: six stages on inline records.
    let result = run(
        &app,
        json!({"type": "pipeline_processing", "payload": {
            "records": [
                {"question": "What helps with stress at work?", "answer": "Short breaks, clear priorities, and talking to your manager early."},
                {"question": "What helps with stress at work?", "answer": "Short breaks, clear priorities, and talking to your manager early."},
                {"prompt": "Email me at joe@example.com about sleep", "response": "Sure, a regular schedule helps most people sleep better."},
                {"unrelated": 1},
            ],
            "options": {"quality_threshold": 0.0, "export_formats": ["chat_jsonl"]},
        }}),
    )
    .await;
    assert_eq!(result["records_in"], 4, "{result}");
    assert_eq!(
        result["records_out"], 2,
        "one duplicate, one unrecognised: {result}"
    );
    assert_eq!(
        result["report"]["stages"].as_array().unwrap().len(),
        6,
        "{result}"
    );
    let chat = result["exports"]["chat_jsonl"].as_str().unwrap();
    assert_eq!(chat.lines().count(), 2, "{chat}");
    assert!(
        chat.contains("[EMAIL]") && !chat.contains("joe@example.com"),
        "{chat}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_typed_task_completes_on_a_fresh_single_node() {
    every_typed_task_completes(Mode::SingleNode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_typed_task_completes_on_a_plain_distributed_worker() {
    every_typed_task_completes(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_payload_is_refused_naming_the_field() {
    let app = App::start(Mode::SingleNode).await;
    let cases = [
        (
            json!({"type": "validation", "payload": {}}),
            "payload.records",
        ),
        (
            json!({"type": "analysis", "payload": {"records": [{"messages": [{"role": "user"}]}]}}),
            "payload.records[0].messages[0].content",
        ),
        (
            json!({"type": "export", "payload": {"records": [{"messages": []}], "format": "pdf"}}),
            "payload.format",
        ),
        (
            json!({"type": "bias_detection", "payload": {"text": "x", "bias_threshold": 3}}),
            "payload.bias_threshold",
        ),
        (
            json!({"type": "pipeline_processing", "payload": {"records": [{}], "options": {"pii": "maybe"}}}),
            "payload.options.pii",
        ),
        (
            json!({"type": "pipeline_processing", "payload": {}}),
            "payload.records",
        ),
    ];
    for (body, field) in cases {
        let (status, b) = app.admin("POST", "/api/v1/tasks", Some(body)).await;
        assert_eq!(status, 422, "{b}");
        assert_eq!(b["error"]["code"], "validation_failed", "{b}");
        assert_eq!(b["error"]["details"]["field"], field, "{b}");
    }
    // A batch refuses the item, by index, and keeps the rest.
    let (status, b) = app
        .admin(
            "POST",
            "/api/v1/tasks/batch",
            Some(json!({"tasks": [
                {"type": "analysis", "payload": {"records": "none"}},
                {"type": "generic", "payload": {"anything": true}},
            ]})),
        )
        .await;
    assert_eq!(status, 202, "{b}");
    assert_eq!(b["data"]["accepted"], 1, "{b}");
    assert_eq!(b["data"]["rejected"][0]["index"], 0, "{b}");

    // The spec documents each type's payload and result.
    let spec: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for schema in [
        "BiasDetectionPayload",
        "ValidationPayload",
        "AnalysisPayload",
        "ExportPayload",
        "PipelineProcessingPayload",
        "BiasDetectionResult",
        "ValidationResult",
        "AnalysisResult",
        "ExportResult",
        "PipelineProcessingResult",
    ] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "{schema} missing from the spec"
        );
    }
}

/// A typed task that requires a capability of its own goes to the agent that has it, with any
/// payload; the built-in workers never take it.
#[tokio::test(flavor = "multi_thread")]
async fn a_typed_task_needing_other_capabilities_goes_to_an_agent() {
    let app = App::start(Mode::SingleNode).await;
    app.define_capability("sentiment").await;
    let (agent, key) = app
        .register_agent(
            json!({"name": "tone-model", "type": "ai_model", "capabilities": ["sentiment"]}),
        )
        .await;
    let task = app
        .create_task(json!({"type": "analysis", "required_capabilities": ["analysis", "sentiment"], "payload": {"free": "form"}}))
        .await;
    // A built-in task submitted after it completes first: the workers are up and did not take
    // the agent's task.
    run(
        &app,
        json!({"type": "bias_detection", "payload": {"text": "hello"}}),
    )
    .await;
    let (status, b) = app
        .admin(
            "GET",
            &format!("/api/v1/tasks/{}", task["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(b["data"]["status"], "pending", "{b}");
    // An agent needs both capabilities: this one has only `sentiment`.
    let (s, _) = app.claim(&agent, &key, 200).await;
    assert_eq!(s, 204);
    let (s, _) = app
        .admin(
            "POST",
            &format!("/api/v1/agents/{agent}/capabilities"),
            Some(json!({"capabilities": ["analysis"], "mode": "add"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, claimed) = app.claim(&agent, &key, 10_000).await;
    assert_eq!(s, 200, "{claimed}");
    assert_eq!(claimed["data"]["id"], task["id"]);
    assert_eq!(claimed["data"]["payload"], json!({"free": "form"}));
}

/// A built-in handler running past the task's timeout fails the attempt, which is retried until
/// the attempts run out.
async fn a_task_past_its_timeout_is_retried_then_dead(mode: Mode) {
    let app = App::start(mode).await;
    let task = app
        .create_task(json!({"type": "generic", "payload": {"sleep_ms": 60_000},
                            "timeout_seconds": 1, "max_attempts": 2}))
        .await;
    let dead = app
        .wait_status(
            task["id"].as_str().unwrap(),
            "dead",
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(dead["attempt"], 2, "{dead}");
    assert!(
        dead["error"].as_str().unwrap_or("").contains("timed out"),
        "{dead}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_past_its_timeout_is_retried_then_dead_single_node() {
    a_task_past_its_timeout_is_retried_then_dead(Mode::SingleNode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_past_its_timeout_is_retried_then_dead_distributed() {
    a_task_past_its_timeout_is_retried_then_dead(Mode::Distributed).await;
}

/// An agent that claims a task and then goes quiet about it (alive, still beating, but never
/// reporting) loses the attempt once its lease ends — `TASK_EXECUTION_TIMEOUT` plus the grace
/// a runner has to report its own timeout — and the task is offered again, then dead.
async fn a_silent_agent_loses_its_attempts_past_the_timeout(mode: Mode) {
    let app = App::start_with(mode, &[("TASK_EXECUTION_TIMEOUT", "1")]).await;
    app.define_capability("slow_review").await;
    let (agent, key) = app
        .register_agent(json!({"name": "silent-reviewer", "type": "validation",
                               "capabilities": ["slow_review"]}))
        .await;
    let beating = {
        let (base, agent, key) = (app.base.clone(), agent.clone(), key.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let _ = http
                    .post(format!("{base}/api/v1/agents/{agent}/heartbeat"))
                    .header("authorization", format!("Agent {key}"))
                    .json(&json!({}))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let task = app
        .create_task(
            json!({"type": "generic", "required_capabilities": ["slow_review"],
                            "payload": {}, "max_attempts": 2}),
        )
        .await;
    assert_eq!(
        task["timeout_seconds"], 1,
        "the deployment's default: {task}"
    );
    let id = task["id"].as_str().unwrap().to_string();
    for attempt in 1..=2 {
        let claimed = crate::helpers::wait_for(
            &format!("attempt {attempt} to be offered"),
            Duration::from_secs(90),
            || async {
                match app.claim(&agent, &key, 5_000).await {
                    (200, body) if body["data"]["id"] == id.as_str() => Ok(body["data"].clone()),
                    (status, body) => Err(format!("{status} {body}")),
                }
            },
        )
        .await;
        assert_eq!(claimed["attempt"], attempt, "{claimed}");
    }
    let dead = app.wait_status(&id, "dead", Duration::from_secs(90)).await;
    beating.abort();
    assert_eq!(dead["attempt"], 2, "{dead}");
    assert!(
        dead["error"]
            .as_str()
            .unwrap_or("")
            .contains("lease expired"),
        "{dead}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_agent_loses_its_attempts_past_the_timeout_single_node() {
    a_silent_agent_loses_its_attempts_past_the_timeout(Mode::SingleNode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_agent_loses_its_attempts_past_the_timeout_distributed() {
    a_silent_agent_loses_its_attempts_past_the_timeout(Mode::Distributed).await;
}
