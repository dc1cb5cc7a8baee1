//! `mcpctl`, the command-line client, run as a real binary against a real server: the session,
//! submitting and watching, exit codes, output for scripts, and resumable batches.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt, process::Command};

use crate::helpers::{
    App, Mode,
    app::{ADMIN, ADMIN_PASSWORD, binary},
    servers::free_port,
    wait_for,
};

/// How long one mcpctl run may take before the test gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// mcpctl with its own config directory, pointed at the app by `MCP_URL`.
struct Ctl {
    dir: PathBuf,
    url: String,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Stdout as one JSON document: anything else there (a message, a progress bar) fails.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Ctl {
    fn new(app: &App) -> Self {
        Self {
            dir: app.dir.path().join("mcpctl"),
            url: app.base.clone(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary("mcpctl"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("MCPCTL_CONFIG", self.dir.join("config.json"))
            .env("MCP_URL", &self.url)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Run {
        run(self.command(args), None).await
    }

    /// Waits until `mcpctl agents` lists the agent: replicas learn of agents registered
    /// elsewhere on their next directory sync.
    async fn wait_listed(&self, agent_id: &str) {
        wait_for(
            "mcpctl to list the agent",
            Duration::from_secs(30),
            async || {
                let agents = self.run(&["agents", "-o", "json"]).await.expect(0).json();
                let listed = agents
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["id"] == agent_id);
                if listed {
                    Ok(())
                } else {
                    Err(agents.to_string())
                }
            },
        )
        .await;
    }

    fn credentials(&self) -> PathBuf {
        self.dir.join("credentials.json")
    }

    async fn login(&self) {
        run(
            self.command(&["login", "--username", ADMIN, "--password-stdin"]),
            Some(ADMIN_PASSWORD),
        )
        .await
        .expect(0);
    }
}

async fn run(mut cmd: Command, stdin: Option<&str>) -> Run {
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("mcpctl starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .expect("mcpctl finished in time")
        .unwrap();
    Run {
        code: out.status.code().expect("mcpctl exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn mcpctl_logs_in_submits_watches_and_reports_exit_codes() {
    let app = App::start(Mode::SingleNode).await;
    let ctl = Ctl::new(&app);

    // No session yet, then bad credentials: both authentication errors, nothing stored.
    ctl.run(&["queues"]).await.expect(3);
    let bad = run(
        ctl.command(&["login", "--username", ADMIN, "--password-stdin"]),
        Some("not-the-password"),
    )
    .await;
    bad.expect(3);
    assert!(!ctl.credentials().exists());

    let login = run(
        ctl.command(&[
            "login",
            "--username",
            ADMIN,
            "--password-stdin",
            "-o",
            "json",
        ]),
        Some(ADMIN_PASSWORD),
    )
    .await;
    assert_eq!(login.expect(0).json()["username"], ADMIN);
    let mode = std::fs::metadata(ctl.credentials())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the session is private to its owner");
    let stored = std::fs::read_to_string(ctl.credentials()).unwrap();
    assert!(
        !stored.contains(ADMIN_PASSWORD),
        "the password is never stored"
    );

    // Submit, then watch it to completion; JSON on stdout, parseable as a whole.
    let submitted = ctl
        .run(&[
            "submit",
            "--type",
            "generic",
            "--priority",
            "high",
            "--payload",
            r#"{"sleep_ms": 300, "n": 7}"#,
            "-o",
            "json",
        ])
        .await;
    let task = submitted.expect(0).json();
    assert_eq!(task["priority"], "high");
    assert_eq!(task["payload"]["n"], 7);
    let id = task["id"].as_str().unwrap().to_string();
    let watched = ctl.run(&["watch", "task", &id, "-o", "json"]).await;
    let done = watched.expect(0).json();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["result"]["n"], 7);
    let shown = ctl.run(&["task", "get", &id]).await;
    assert!(
        shown
            .expect(0)
            .stdout
            .lines()
            .any(|l| l.starts_with("status") && l.ends_with("completed")),
        "{}",
        shown.stdout
    );

    // A task that fails on its only attempt ends dead: exit 1.
    let failing = ctl
        .run(&[
            "submit",
            "--type",
            "generic",
            "--payload",
            r#"{"fail": true}"#,
            "--max-attempts",
            "1",
            "-o",
            "json",
        ])
        .await;
    let failing_id = failing.expect(0).json()["id"].as_str().unwrap().to_string();
    let watched = ctl.run(&["watch", "task", &failing_id, "-o", "json"]).await;
    assert_eq!(watched.expect(1).json()["status"], "dead");

    // The same idempotency key twice: one task.
    let keyed = |n: u32| {
        let payload = json!({"n": n}).to_string();
        let cmd = ctl.command(&[
            "submit",
            "--type",
            "generic",
            "--idempotency-key",
            "mcpctl-test-key",
            "--payload",
            &payload,
            "-o",
            "json",
        ]);
        run(cmd, None)
    };
    let first = keyed(1).await.expect(0).json();
    let again = keyed(1).await.expect(0).json();
    assert_eq!(first["id"], again["id"]);
    // Reused with another body: refused (409), exit 1.
    keyed(2).await.expect(1);

    // Not found: 4.
    let unknown = uuid::Uuid::now_v7().to_string();
    ctl.run(&["task", "get", &unknown]).await.expect(4);
    ctl.run(&["watch", "task", &unknown]).await.expect(4);
    ctl.run(&["pipeline", "get", &unknown]).await.expect(4);

    // Usage: 2, with the reason on stderr and nothing on stdout.
    for args in [
        vec!["submit", "--payload", "{}"],
        vec!["frobnicate"],
        vec!["-o", "yaml", "queues"],
        vec!["queues", "--bogus"],
        vec!["batch"],
        vec!["task", "get", "not-an-id"],
        vec!["submit", "--type", "generic", "--payload", "{not json"],
    ] {
        let r = ctl.run(&args).await;
        r.expect(2);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        assert!(r.stderr.starts_with("mcpctl: "), "{args:?}: {}", r.stderr);
    }
    // Refused by the server as invalid (422): 1.
    ctl.run(&["submit", "--type", "generic", "--priority", "urgent"])
        .await
        .expect(1);
    // Nothing listening: 5.
    let dead_url = format!("http://127.0.0.1:{}", free_port());
    ctl.run(&["--url", &dead_url, "--token", "x", "queues"])
        .await
        .expect(5);

    // Precedence: flags > environment > config file.
    std::fs::write(
        ctl.dir.join("config.json"),
        json!({"url": dead_url, "output": "json"}).to_string(),
    )
    .unwrap();
    let from_env = ctl.run(&["queues"]).await;
    assert!(
        from_env.expect(0).json().is_array(),
        "MCP_URL wins over the file; the file's output format applies"
    );
    let mut file_only = ctl.command(&["--token", &app.admin_token, "queues"]);
    file_only.env_remove("MCP_URL");
    run(file_only, None).await.expect(5);
    let mut flag = ctl.command(&["--url", &app.base, "queues"]);
    flag.env("MCP_URL", &dead_url);
    run(flag, None).await.expect(0);
    std::fs::remove_file(ctl.dir.join("config.json")).unwrap();

    // An expired access token is refreshed, and the new session saved.
    let mut creds = read_json(&ctl.credentials());
    let old_refresh = creds["refresh_token"].clone();
    creds["expires_at"] = json!(0);
    std::fs::write(ctl.credentials(), creds.to_string()).unwrap();
    ctl.run(&["queues", "-o", "json"]).await.expect(0);
    let renewed = read_json(&ctl.credentials());
    assert_ne!(renewed["refresh_token"], old_refresh);
    assert!(renewed["expires_at"].as_u64().unwrap() > 0);

    // Agents and queues, as JSON and as tables.
    let agent_id = done["agent_id"].as_str().expect("the task ran on an agent");
    ctl.wait_listed(agent_id).await;
    let table = ctl.run(&["agents"]).await;
    let mut lines = table.expect(0).stdout.lines();
    assert!(lines.next().unwrap().starts_with("ID"));
    assert!(lines.any(|l| l.starts_with(agent_id)), "{}", table.stdout);

    let queues = ctl.run(&["queues", "-o", "json"]).await.expect(0).json();
    let generic = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["capability"] == "generic")
        .unwrap_or_else(|| panic!("no generic queue in {queues}"));
    assert!(generic["processed_total"].as_i64().unwrap() >= 1);
    let table = ctl.run(&["queues"]).await;
    let mut lines = table.expect(0).stdout.lines();
    assert!(lines.next().unwrap().starts_with("QUEUE"));
    assert!(
        lines.any(|l| l.split_whitespace().nth(1) == Some("generic")),
        "{}",
        table.stdout
    );

    // Logout ends the session on the server too: the stored tokens no longer work.
    let session = read_json(&ctl.credentials());
    ctl.run(&["logout"]).await.expect(0);
    ctl.run(&["queues"]).await.expect(3);
    let access = session["access_token"].as_str().unwrap();
    let (s, b) = app.call("GET", "/api/v1/queues", Some(access), None).await;
    assert_eq!(s, 401, "the logged-out access token: {b}");
    let (s, b) = app.refresh(&session["refresh_token"]).await;
    assert_eq!(s, 401, "the logged-out refresh token: {b}");
}

/// Tasks waiting at tier low on `capability`, counted from the task rows by `GET /queues`.
async fn pending_low(app: &App, capability: &str) -> i64 {
    let (status, body) = app.admin("GET", "/api/v1/queues", None).await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["capability"] == capability)
        .map(|q| q["pending"]["low"].as_i64().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn mcpctl_batch_resumes_after_a_kill_without_duplicates() {
    const TASKS: usize = 50_000;
    let app = App::start(Mode::SingleNode).await;
    let ctl = Ctl::new(&app);
    ctl.login().await;

    // A capability no worker serves, so every accepted task stays pending and is counted.
    // Two malformed lines among them, rejected locally with their line numbers.
    let mut file = String::with_capacity(TASKS * 90);
    let mut bad_lines = Vec::new();
    let mut line = 0;
    for i in 0..TASKS {
        if i == 10 || i == 30_000 {
            line += 1;
            bad_lines.push(line);
            file.push_str(if i == 10 { "{not json\n" } else { "[1, 2]\n" });
        }
        line += 1;
        file.push_str(
            &json!({"type": "generic", "required_capabilities": ["bulk_import"], "payload": {"i": i}})
                .to_string(),
        );
        file.push('\n');
    }
    let path = app.dir.path().join("tasks.jsonl");
    std::fs::write(&path, file).unwrap();
    let path = path.display().to_string();
    let batch = |extra: &[&str]| {
        let mut args = vec!["batch", path.as_str(), "--chunk-size", "500", "-o", "json"];
        args.extend_from_slice(extra);
        ctl.command(&args)
    };

    // Interrupted once the checkpoint shows some, but not all, chunks acknowledged.
    let mut child = batch(&[]).spawn().unwrap();
    let checkpoints = ctl.dir.join("checkpoints");
    let acknowledged = wait_for(
        "the batch to get part-way",
        Duration::from_secs(60),
        async || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the batch ended ({status}) before it could be interrupted");
            }
            let progress: Vec<u64> = std::fs::read_dir(&checkpoints)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                // Only the checkpoint itself, not the temporary file it is renamed from.
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .filter_map(|t| serde_json::from_str::<Value>(&t).ok())
                .filter_map(|cp| cp["acknowledged"].as_u64())
                .collect();
            match progress.first() {
                Some(&n) if n > 0 && n < TASKS as u64 => Ok(n),
                other => Err(format!("last checkpoint: {other:?}")),
            }
        },
    )
    .await;
    child.kill().await.unwrap();
    let after_kill = pending_low(&app, "bulk_import").await;
    assert!(
        after_kill >= acknowledged as i64 && after_kill < TASKS as i64,
        "{after_kill} tasks after the kill, {acknowledged} acknowledged"
    );

    // Resumed: it skips what was acknowledged, and the chunk in flight at the kill is replayed
    // without duplicates.
    let resumed = run(batch(&[]), None).await;
    let summary = resumed.expect(1).json();
    assert_eq!(summary["accepted"], TASKS);
    assert_eq!(summary["lines"], TASKS + 2);
    let resumed_after = summary["resumed_after_items"].as_u64().unwrap();
    assert!(
        resumed_after >= acknowledged && resumed_after < TASKS as u64,
        "resumed after {resumed_after}, {acknowledged} acknowledged before the kill: {}",
        resumed.stderr
    );
    let rejected: Vec<u64> = summary["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, bad_lines);
    assert_eq!(pending_low(&app, "bulk_import").await, TASKS as i64);

    // Run again: already submitted, nothing sent.
    let again = run(batch(&[]), None).await;
    assert_eq!(again.expect(1).json()["accepted"], TASKS);
    assert!(
        again.stderr.contains("already submitted"),
        "{}",
        again.stderr
    );
    // From the first line again: every line is a replay of its idempotency key.
    let restarted = run(batch(&["--restart"]), None).await;
    let summary = restarted.expect(1).json();
    assert_eq!(summary["accepted"], TASKS);
    assert_eq!(summary["resumed_after_items"], 0);
    assert_eq!(pending_low(&app, "bulk_import").await, TASKS as i64);
}

#[tokio::test]
async fn mcpctl_pipeline_batch_and_watch() {
    let app = App::start(Mode::SingleNode).await;
    let ctl = Ctl::new(&app);
    ctl.login().await;

    let records = json!([
        {"question": "Is it okay to rest?", "answer": "Yes, rest is part of recovery and helps you think clearly."},
        {"question": "How do I start running?", "answer": "Begin with short, easy runs a few times a week and build up slowly."}
    ]);
    let lines = [
        json!({"records": records}).to_string(),
        json!({"records": records, "options": {"export_formats": ["parquet"]}}).to_string(),
        json!({"records": records, "priority": "high"}).to_string(),
        "not json".to_string(),
    ];
    let path = app.dir.path().join("executions.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let path = path.display().to_string();
    let args = ["batch", path.as_str(), "--kind", "pipeline", "-o", "json"];
    let batch = || ctl.run(&args);

    let summary = batch().await.expect(1).json();
    assert_eq!(summary["accepted"], 2);
    let rejected: Vec<u64> = summary["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, vec![2, 4], "{summary}");
    assert!(
        summary["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("export_formats"),
        "{summary}"
    );
    let ids: Vec<String> = summary["execution_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);

    // Watched to the end: JSON for scripts, and a bar per stage on stderr for people.
    let watched = ctl.run(&["watch", "pipeline", &ids[0], "-o", "json"]).await;
    assert_eq!(watched.expect(0).json()["status"], "completed");
    let watched = ctl.run(&["watch", "pipeline", &ids[1]]).await;
    assert!(
        watched.expect(0).stdout.contains("completed"),
        "{}",
        watched.stdout
    );
    assert!(
        watched.stderr.contains("quality_assessment"),
        "{}",
        watched.stderr
    );
    let shown = ctl.run(&["pipeline", "get", &ids[0]]).await;
    let stdout = &shown.expect(0).stdout;
    assert!(
        stdout.contains("STAGE") && stdout.contains("export"),
        "{stdout}"
    );

    // A second run starts nothing new.
    let again = batch().await.expect(1).json();
    assert_eq!(again["execution_ids"].as_array().unwrap().len(), 2);
    assert_eq!(again["execution_ids"], summary["execution_ids"]);

    // The process died with the first chunk sent but not acknowledged, so the checkpoint counts
    // nothing of it. The re-run sends the chunk again, and each line's idempotency key finds the
    // execution it already started.
    let checkpoint = PathBuf::from(summary["checkpoint"].as_str().unwrap());
    let mut cp = read_json(&checkpoint);
    cp["complete"] = json!(false);
    cp["acknowledged"] = json!(0);
    cp["accepted"] = json!(0);
    cp["rejected"] = json!([]);
    cp["execution_ids"] = json!([]);
    std::fs::write(&checkpoint, cp.to_string()).unwrap();
    let resumed = batch().await.expect(1).json();
    assert_eq!(resumed["accepted"], 2, "{resumed}");
    assert_eq!(
        resumed["execution_ids"], summary["execution_ids"],
        "{resumed}"
    );

    // From the first line again: the same executions, nothing new.
    let restarted = ctl
        .run(&[
            "batch",
            &path,
            "--kind",
            "pipeline",
            "-o",
            "json",
            "--restart",
        ])
        .await;
    let restarted = restarted.expect(1).json();
    assert_eq!(restarted["execution_ids"], summary["execution_ids"]);
    assert_eq!(restarted["accepted"], 2);
}

#[tokio::test]
async fn mcpctl_against_the_distributed_mode() {
    // PostgreSQL, Redis, and a separate `mcp-worker` process: events reach the watch through
    // the Redis stream, and batch replays are deduplicated by PostgreSQL.
    let app = App::start(Mode::Distributed).await;
    let ctl = Ctl::new(&app);
    ctl.login().await;

    let task = ctl
        .run(&[
            "submit",
            "--type",
            "generic",
            "--payload",
            r#"{"sleep_ms": 200, "n": 3}"#,
            "-o",
            "json",
        ])
        .await
        .expect(0)
        .json();
    let id = task["id"].as_str().unwrap();
    let done = ctl
        .run(&["watch", "task", id, "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["result"]["n"], 3);
    let agent_id = done["agent_id"].as_str().expect("the worker ran it");
    ctl.wait_listed(agent_id).await;

    const TASKS: usize = 3_000;
    let file: String = (0..TASKS)
        .map(|i| {
            json!({"type": "generic", "required_capabilities": ["bulk_import"], "payload": {"i": i}})
                .to_string()
                + "\n"
        })
        .collect();
    let path = app.dir.path().join("tasks.jsonl");
    std::fs::write(&path, file).unwrap();
    let path = path.display().to_string();
    for extra in [None, Some("--restart")] {
        let mut args = vec!["batch", path.as_str(), "-o", "json"];
        args.extend(extra);
        let summary = ctl.run(&args).await.expect(0).json();
        assert_eq!(summary["accepted"], TASKS, "{summary}");
        assert_eq!(pending_low(&app, "bulk_import").await, TASKS as i64);
    }
}

#[tokio::test]
async fn mcpctl_batch_chunk_over_the_body_limit_stops_and_continues_smaller() {
    let app = App::start_with(Mode::SingleNode, &[("MCP_MAX_BODY_BYTES", "16384")]).await;
    let ctl = Ctl::new(&app);
    ctl.login().await;
    let file: String = (0..300)
        .map(|i| {
            json!({"type": "generic", "required_capabilities": ["small_batch"], "payload": {"i": i}})
                .to_string()
                + "\n"
        })
        .collect();
    let path = app.dir.path().join("small.jsonl");
    std::fs::write(&path, file).unwrap();
    let path = path.display().to_string();

    // 200 lines are over 16 KiB: the chunk is refused as a whole, and no line is blamed.
    let big = ctl
        .run(&["batch", &path, "--chunk-size", "200", "-o", "json"])
        .await;
    big.expect(1);
    assert!(big.stdout.is_empty(), "{}", big.stdout);
    assert!(big.stderr.contains("--chunk-size"), "{}", big.stderr);
    assert_eq!(pending_low(&app, "small_batch").await, 0);

    let small = ctl
        .run(&["batch", &path, "--chunk-size", "50", "-o", "json"])
        .await;
    let summary = small.expect(0).json();
    assert_eq!(summary["accepted"], 300);
    assert_eq!(summary["rejected_count"], 0);
    assert_eq!(pending_low(&app, "small_batch").await, 300);
}

#[tokio::test]
async fn mcpctl_creates_lists_pauses_resumes_and_deletes_schedules() {
    let app = App::start(Mode::SingleNode).await;
    let ctl = Ctl::new(&app);
    ctl.login().await;

    // Refused by the server (an unknown time zone): exit 1, nothing stored.
    ctl.run(&[
        "schedules",
        "create",
        "--name",
        "bad",
        "--cron",
        "0 2 * * *",
        "--time-zone",
        "Nowhere/Else",
        "--task",
        r#"{"type": "generic", "payload": {}}"#,
    ])
    .await
    .expect(1);
    let listed = ctl
        .run(&["schedules", "list", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(listed, json!([]), "a refused schedule was stored");

    let created = ctl
        .run(&[
            "schedules",
            "create",
            "--name",
            "nightly",
            "--cron",
            "0 2 * * *",
            "--time-zone",
            "Europe/Paris",
            "--task",
            r#"{"type": "generic", "payload": {"n": 1}}"#,
            "--overlap",
            "cancel_previous",
            "--catch-up",
            "all",
            "-o",
            "json",
        ])
        .await
        .expect(0)
        .json();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["cron"], "0 2 * * *");
    assert_eq!(created["overlap_policy"], "cancel_previous");
    assert_eq!(created["catch_up_policy"], "all");
    assert_eq!(created["next_run_times"].as_array().unwrap().len(), 5);

    let human = ctl.run(&["schedules", "list"]).await;
    human.expect(0);
    assert!(
        human.stdout.contains("nightly") && human.stdout.contains("Europe/Paris"),
        "{}",
        human.stdout
    );
    let paused = ctl
        .run(&["schedules", "pause", &id, "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["next_run_times"], json!([]));
    let resumed = ctl
        .run(&["schedules", "resume", &id, "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(resumed["paused"], false);
    assert_eq!(resumed["next_run_times"].as_array().unwrap().len(), 5);
    ctl.run(&["schedules", "delete", &id]).await.expect(0);
    ctl.run(&["schedules", "get", &id]).await.expect(4);
    ctl.run(&["schedules", "get", "not-an-id"]).await.expect(2);
}
