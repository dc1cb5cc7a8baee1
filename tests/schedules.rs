//! Recurring schedules: the API's checks, and each occurrence firing once across replicas and
//! restarts under the overlap, catch-up and pause rules. (Next-run computation across
//! daylight-saving changes is unit-tested beside the schedule timing in `mcp-shared`.)

use std::{collections::HashSet, time::Duration};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value, json};

use crate::helpers::{App, Mode, wait::wait_for};

async fn create(app: &App, body: Value) -> Value {
    let (s, b) = app.admin("POST", "/api/v1/schedules", Some(body)).await;
    assert_eq!(s, 201, "schedule not created: {b}");
    b["data"].clone()
}

async fn runs(app: &App, id: &str) -> Vec<Value> {
    let (s, b) = app
        .admin(
            "GET",
            &format!("/api/v1/schedules/{id}/runs?limit=1000"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b["data"].as_array().unwrap().clone()
}

/// Waits until the schedule has `n` occurrences or more, none still being created; oldest first.
async fn wait_runs(app: &App, id: &str, n: usize, timeout: Duration) -> Vec<Value> {
    wait_for(
        &format!("{n} settled runs of schedule {id}"),
        timeout,
        || async {
            let mut r = runs(app, id).await;
            if r.len() >= n && r.iter().all(|r| r["outcome"] != "firing") {
                r.reverse();
                Ok(r)
            } else {
                Err(json!(r).to_string())
            }
        },
    )
    .await
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

async fn patch(app: &App, id: &str, body: Value) -> Value {
    let (s, b) = app
        .admin("PATCH", &format!("/api/v1/schedules/{id}"), Some(body))
        .await;
    assert_eq!(s, 200, "{b}");
    b["data"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_are_created_read_changed_and_deleted_and_bad_input_changes_nothing() {
    let app = App::start(Mode::SingleNode).await;
    let task = json!({"type": "generic", "payload": {"n": 1}});
    let bad: &[(Value, &str)] = &[
        (json!({"name": "x", "task": task}), "cron"),
        (
            json!({"name": "x", "cron": "* * * * *", "interval_seconds": 5, "task": task}),
            "interval_seconds",
        ),
        (
            json!({"name": "x", "cron": "61 * * * *", "task": task}),
            "cron",
        ),
        (
            json!({"name": "x", "cron": "0 0 30 2 *", "task": task}),
            "cron",
        ),
        (
            json!({"name": "x", "cron": "0 2 * * *", "time_zone": "Mars/Olympus", "task": task}),
            "time_zone",
        ),
        (
            json!({"name": "x", "interval_seconds": 0, "task": task}),
            "interval_seconds",
        ),
        (
            json!({"name": "", "interval_seconds": 5, "task": task}),
            "name",
        ),
        (json!({"name": "x", "interval_seconds": 5}), "task"),
        (
            json!({"name": "x", "interval_seconds": 5, "overlap_policy": "sometimes", "task": task}),
            "overlap_policy",
        ),
        (
            json!({"name": "x", "interval_seconds": 5,
                   "task": {"type": "generic", "payload": {}, "run_at": "2030-01-01T00:00:00Z"}}),
            "task.run_at",
        ),
        (
            json!({"name": "x", "interval_seconds": 5,
                   "task": {"type": "generic", "payload": {}, "max_attempts": 0}}),
            "task.max_attempts",
        ),
        (
            json!({"name": "x", "interval_seconds": 5,
                   "pipeline": {"dataset_id": "0193a4f0-0000-7000-8000-000000000000"}}),
            "pipeline.dataset_id",
        ),
        (
            json!({"name": "x", "interval_seconds": 5, "pipeline": {"records": [{"text": "hi"}]}}),
            "pipeline.records",
        ),
    ];
    for (body, field) in bad {
        let (s, b) = app
            .admin("POST", "/api/v1/schedules", Some(body.clone()))
            .await;
        assert_eq!(s, 422, "{body} → {b}");
        assert_eq!(b["success"], false, "{b}");
        assert_eq!(b["error"]["code"], "validation_failed", "{b}");
        assert_eq!(b["error"]["details"]["field"], *field, "{body} → {b}");
    }
    let (_, list) = app.admin("GET", "/api/v1/schedules", None).await;
    assert_eq!(list["count"], 0, "refused schedules were stored: {list}");

    let s = create(
        &app,
        json!({"name": "nightly", "cron": "0 2 * * *", "time_zone": "America/New_York",
               "task": task, "overlap_policy": "cancel_previous", "catch_up_policy": "skip"}),
    )
    .await;
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["time_zone"], "America/New_York");
    assert_eq!(s["template_kind"], "task");
    assert_eq!(s["overlap_policy"], "cancel_previous");
    assert_eq!(s["catch_up_policy"], "skip");
    assert_eq!(s["paused"], false);
    let next: Vec<DateTime<Utc>> = s["next_run_times"]
        .as_array()
        .unwrap()
        .iter()
        .map(time)
        .collect();
    assert_eq!(next.len(), 5, "{s}");
    for t in &next {
        let local = t.with_timezone(&chrono_tz::America::New_York);
        assert!(
            local.format("%M:%S").to_string() == "00:00" && t > &Utc::now(),
            "{t} is not a coming hour in New York"
        );
    }
    assert!(next.windows(2).all(|w| w[0] < w[1]), "{next:?}");

    let (st, got) = app
        .admin("GET", &format!("/api/v1/schedules/{id}"), None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(got["data"]["name"], "nightly");
    let (_, list) = app.admin("GET", "/api/v1/schedules", None).await;
    assert_eq!(list["count"], 1, "{list}");

    let paused = patch(&app, &id, json!({"paused": true})).await;
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["next_run_times"], json!([]), "{paused}");
    let resumed = patch(&app, &id, json!({"paused": false, "name": "nightly-2"})).await;
    assert_eq!(resumed["next_run_times"].as_array().unwrap().len(), 5);
    assert_eq!(resumed["name"], "nightly-2");
    let every = patch(&app, &id, json!({"interval_seconds": 600})).await;
    assert_eq!(every["interval_seconds"], 600);
    assert!(every.get("cron").is_none(), "{every}");

    let (st, b) = app
        .admin(
            "PATCH",
            &format!("/api/v1/schedules/{id}"),
            Some(json!({"time_zone": "Nowhere/Else"})),
        )
        .await;
    assert_eq!(st, 422, "{b}");
    assert_eq!(b["error"]["details"]["field"], "time_zone");
    let (_, after) = app
        .admin("GET", &format!("/api/v1/schedules/{id}"), None)
        .await;
    assert_eq!(after["data"]["time_zone"], "America/New_York", "{after}");

    let (st, _) = app
        .admin("DELETE", &format!("/api/v1/schedules/{id}"), None)
        .await;
    assert_eq!(st, 200);
    let (st, b) = app
        .admin("GET", &format!("/api/v1/schedules/{id}"), None)
        .await;
    assert_eq!(st, 404, "{b}");
    assert_eq!(b["error"]["code"], "not_found");
    let (st, _) = app
        .admin("DELETE", &format!("/api/v1/schedules/{id}"), None)
        .await;
    assert_eq!(st, 404);

    for action in ["schedule.create", "schedule.update", "schedule.delete"] {
        wait_for(
            &format!("an audit record of {action}"),
            Duration::from_secs(10),
            || async {
                let (_, b) = app
                    .admin("GET", &format!("/api/v1/audit?action={action}"), None)
                    .await;
                let found = b["data"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|r| r["target"] == id.as_str()));
                if found { Ok(()) } else { Err(b.to_string()) }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_occurrence_fires_one_task_across_two_replicas() {
    let mut app = App::start(Mode::Distributed).await;
    app.start_replica().await;
    let s = create(
        &app,
        json!({"name": "every-second", "interval_seconds": 1, "overlap_policy": "queue",
               "task": {"type": "generic", "payload": {"tick": true}}}),
    )
    .await;
    let id = s["id"].as_str().unwrap().to_string();
    wait_runs(&app, &id, 6, Duration::from_secs(30)).await;
    patch(&app, &id, json!({"paused": true})).await;
    let fired = wait_runs(&app, &id, 6, Duration::from_secs(10)).await;

    let occurrences: HashSet<String> = fired
        .iter()
        .map(|r| r["occurrence_at"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        occurrences.len(),
        fired.len(),
        "an occurrence recorded twice: {fired:?}"
    );
    for w in fired.windows(2) {
        let gap = time(&w[1]["occurrence_at"]) - time(&w[0]["occurrence_at"]);
        assert_eq!(
            gap.num_seconds(),
            1,
            "occurrences not one second apart: {w:?}"
        );
    }
    assert!(
        fired.iter().all(|r| r["outcome"] == "fired"),
        "with overlap `queue` every occurrence fires: {fired:?}"
    );
    let run_tasks: HashSet<String> = fired
        .iter()
        .map(|r| r["task_id"].as_str().unwrap().to_string())
        .collect();
    let run_keys: HashSet<String> = fired
        .iter()
        .map(|r| format!("schedule:{id}:{}", time(&r["occurrence_at"]).timestamp()))
        .collect();
    assert_eq!(
        run_tasks.len(),
        fired.len(),
        "two runs share a task: {fired:?}"
    );
    // The tasks the schedule made, read from the tasks themselves: one per occurrence.
    let (_, tasks) = app.admin("GET", "/api/v1/tasks?limit=1000", None).await;
    let made: Vec<&Value> = tasks["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["payload"]["tick"] == true)
        .collect();
    assert_eq!(made.len(), fired.len(), "tasks {made:?} for runs {fired:?}");
    for t in made {
        assert!(
            run_tasks.contains(t["id"].as_str().unwrap()),
            "{t} has no run"
        );
        let key = t["idempotency_key"].as_str().unwrap();
        assert!(run_keys.contains(key), "{t} is keyed for no occurrence");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_downtime_catch_up_one_runs_the_missed_occurrence_and_skip_records_it_missed() {
    let mut app = App::start(Mode::SingleNode).await;
    // Whole seconds, as the schedule keeps them.
    let start_at = (Utc::now() + chrono::Duration::seconds(4))
        .trunc_subsecs(0)
        .to_rfc3339();
    let make = |policy: &str| {
        json!({"name": format!("catch-up-{policy}"), "interval_seconds": 3600, "start_at": start_at,
               "catch_up_policy": policy, "task": {"type": "generic", "payload": {"policy": policy}}})
    };
    let one = create(&app, make("one")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let skip = create(&app, make("skip")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.kill_api();
    // Down across the due time and past the grace an on-time occurrence gets (5 s): time
    // passing is what is tested here.
    let due: DateTime<Utc> = start_at.parse().unwrap();
    let back = due + chrono::Duration::seconds(7);
    tokio::time::sleep((back - Utc::now()).to_std().unwrap_or_default()).await;
    app.start_api();
    app.wait_healthy().await;

    let r = wait_runs(&app, &one, 1, Duration::from_secs(15)).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(time(&r[0]["occurrence_at"]), due);
    assert_eq!(r[0]["outcome"], "fired", "{r:?}");
    let task_id = r[0]["task_id"].as_str().unwrap();
    app.wait_status(task_id, "completed", Duration::from_secs(30))
        .await;

    let r = wait_runs(&app, &skip, 1, Duration::from_secs(15)).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(time(&r[0]["occurrence_at"]), due);
    assert_eq!(r[0]["outcome"], "missed", "{r:?}");
    assert!(r[0].get("task_id").is_none(), "{r:?}");
    let (_, s) = app
        .admin("GET", &format!("/api/v1/schedules/{skip}"), None)
        .await;
    assert_eq!(
        time(&s["data"]["next_run_times"][0]),
        due + chrono::Duration::seconds(3600),
        "{s}"
    );
    let (_, tasks) = app.admin("GET", "/api/v1/tasks?limit=1000", None).await;
    let skipped_tasks = tasks["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["payload"]["policy"] == "skip")
        .count();
    assert_eq!(skipped_tasks, 0, "{tasks}");
}

#[tokio::test(flavor = "multi_thread")]
async fn overlap_skip_waits_for_the_pending_task_and_cancel_previous_replaces_it() {
    let app = App::start(Mode::SingleNode).await;
    // Served by no worker or agent: the task stays pending.
    app.define_capability("schedule_unserved").await;
    let template = json!({"type": "analysis", "required_capabilities": ["schedule_unserved"],
                          "payload": {"text": "x"}});
    let skip = create(
        &app,
        json!({"name": "overlap-skip", "interval_seconds": 1, "overlap_policy": "skip", "task": template}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = wait_runs(&app, &skip, 3, Duration::from_secs(20)).await;
    assert_eq!(r[0]["outcome"], "fired", "{r:?}");
    assert!(
        r[1..]
            .iter()
            .all(|r| r["outcome"] == "skipped" && r.get("task_id").is_none()),
        "later occurrences must be skipped while the first task is pending: {r:?}"
    );
    let first = r[0]["task_id"].as_str().unwrap().to_string();
    assert_eq!(
        app.wait_status(&first, "pending", Duration::from_secs(5))
            .await["status"],
        "pending"
    );
    // Once it is finished, the next occurrence fires again.
    let (s, b) = app
        .admin("POST", &format!("/api/v1/tasks/{first}/cancel"), None)
        .await;
    assert_eq!(s, 200, "{b}");
    wait_for(
        "an occurrence to fire after the cancel",
        Duration::from_secs(20),
        || async {
            let r = runs(&app, &skip).await;
            let fired = r.iter().filter(|r| r["outcome"] == "fired").count();
            if fired >= 2 {
                Ok(())
            } else {
                Err(json!(r).to_string())
            }
        },
    )
    .await;
    patch(&app, &skip, json!({"paused": true})).await;

    let cancel = create(
        &app,
        json!({"name": "overlap-cancel", "interval_seconds": 1, "overlap_policy": "cancel_previous",
               "task": template}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = wait_runs(&app, &cancel, 2, Duration::from_secs(20)).await;
    assert!(r[..2].iter().all(|r| r["outcome"] == "fired"), "{r:?}");
    let replaced = r[0]["task_id"].as_str().unwrap();
    app.wait_status(replaced, "cancelled", Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_schedule_fires_nothing_until_resumed() {
    let app = App::start(Mode::SingleNode).await;
    let id = create(
        &app,
        json!({"name": "pausable", "interval_seconds": 1, "overlap_policy": "queue",
               "task": {"type": "generic", "payload": {"p": 1}}}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_runs(&app, &id, 1, Duration::from_secs(15)).await;
    let paused = patch(&app, &id, json!({"paused": true})).await;
    assert_eq!(paused["next_run_times"], json!([]));
    let before = wait_runs(&app, &id, 1, Duration::from_secs(10)).await.len();
    // Three intervals pass while paused: time passing is what is tested.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        runs(&app, &id).await.len(),
        before,
        "a paused schedule fired"
    );
    let resumed_at = Utc::now();
    let resumed = patch(&app, &id, json!({"paused": false})).await;
    assert_eq!(resumed["next_run_times"].as_array().unwrap().len(), 5);
    let after = wait_runs(&app, &id, before + 1, Duration::from_secs(15)).await;
    // Occurrences that fell while paused are not caught up: every new one is after the resume.
    for r in &after[before..] {
        assert_eq!(r["outcome"], "fired", "{after:?}");
        assert!(
            time(&r["occurrence_at"]) > resumed_at - chrono::Duration::seconds(1),
            "an occurrence from the pause was run: {after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_removes_old_occurrences_from_the_history() {
    // Data older than ~8.6 s is purged every second.
    let app = App::start_with(
        Mode::SingleNode,
        &[
            ("AGENT_DATA_RETENTION_DAYS", "0.0001"),
            ("MCP_RETENTION_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let id = create(
        &app,
        json!({"name": "short-lived-history", "interval_seconds": 1,
               "task": {"type": "generic", "payload": {"r": 1}}}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let first = wait_runs(&app, &id, 1, Duration::from_secs(15)).await[0]["occurrence_at"].clone();
    patch(&app, &id, json!({"paused": true})).await;
    wait_for(
        "the first occurrence to leave the history",
        Duration::from_secs(40),
        || async {
            let r = runs(&app, &id).await;
            if r.iter().any(|r| r["occurrence_at"] == first) {
                Err(json!(r).to_string())
            } else {
                Ok(())
            }
        },
    )
    .await;
    // The schedule itself stays.
    let (s, _) = app
        .admin("GET", &format!("/api/v1/schedules/{id}"), None)
        .await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_schedule_starts_executions_over_its_dataset() {
    let app = App::start(Mode::SingleNode).await;
    let (status, dataset) = app
        .upload("application/x-ndjson", crate::helpers::synth::ndjson(3, 10))
        .await;
    assert_eq!(status, 201, "{dataset}");
    let id = create(
        &app,
        json!({"name": "reprocess", "interval_seconds": 1, "overlap_policy": "skip",
               "pipeline": {"dataset_id": dataset["data"]["dataset_id"]}}),
    )
    .await;
    assert_eq!(id["template_kind"], "pipeline");
    let id = id["id"].as_str().unwrap().to_string();
    let r = wait_runs(&app, &id, 1, Duration::from_secs(20)).await;
    assert_eq!(r[0]["outcome"], "fired", "{r:?}");
    let execution = r[0]["execution_id"]
        .as_str()
        .expect("an execution")
        .to_string();
    patch(&app, &id, json!({"paused": true})).await;
    let done = app
        .wait_execution(&execution, Duration::from_secs(120))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_occurrence_whose_replica_died_after_the_claim_is_started_once_by_another() {
    let app = App::start(Mode::Distributed).await;
    let id = create(
        &app,
        json!({"name": "interrupted", "interval_seconds": 3600, "paused": true,
               "task": {"type": "generic", "payload": {"interrupted": true}}}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // What a replica leaves when it dies between claiming the occurrence and creating its task.
    let occurrence = "2030-01-01T00:00:00Z";
    let stalled = |run_id: &str| {
        format!(
            "INSERT INTO schedule_runs (id, schedule_id, occurrence_at, outcome, fired_at) \
             VALUES ('{run_id}', '{id}', '{occurrence}', 'firing', now() - interval '1 minute')"
        )
    };
    app.sql(&stalled("0193a4f0-0000-7000-8000-000000000001"));
    let settled = wait_runs(&app, &id, 1, Duration::from_secs(30)).await;
    assert_eq!(settled[0]["outcome"], "fired", "{settled:?}");
    let task_id = settled[0]["task_id"].as_str().unwrap().to_string();
    let task = app
        .wait_status(&task_id, "completed", Duration::from_secs(30))
        .await;
    let key = format!("schedule:{id}:{}", time(&json!(occurrence)).timestamp());
    assert_eq!(task["idempotency_key"], key.as_str(), "{task}");

    // Interrupted again after the task was created: settled with the same task, not a second.
    app.sql(&format!(
        "DELETE FROM schedule_runs WHERE schedule_id = '{id}'"
    ));
    app.sql(&stalled("0193a4f0-0000-7000-8000-000000000002"));
    let again = wait_runs(&app, &id, 1, Duration::from_secs(30)).await;
    assert_eq!(again[0]["task_id"], task_id.as_str(), "{again:?}");
    let (_, tasks) = app.admin("GET", "/api/v1/tasks?limit=1000", None).await;
    let made = tasks["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["payload"]["interrupted"] == true)
        .count();
    assert_eq!(made, 1, "{tasks}");
}
