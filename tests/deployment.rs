//! How the service starts and is deployed: production refuses weak configuration, readiness
//! names a failed dependency, and the shipped manifests are valid.

use std::{path::Path, process::Command, time::Duration};

use crate::helpers::{App, Mode, app::binary, servers::python_module, wait_for};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn production_refuses_to_start_without_secrets() {
    let run = |env: &[(&str, &str)]| {
        let out = Command::new(binary("mcp-api"))
            .env_clear()
            .env("MCP_ENV", "production")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "mcp-api started without its secrets");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(run(&[]).contains("MCP_SECRET_KEY"));
    let long = "s".repeat(40);
    let err = run(&[("MCP_SECRET_KEY", &long)]);
    assert!(err.contains("JWT_SECRET_KEY"), "{err}");
    assert!(!err.contains(&long), "the secret is not echoed");
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_names_the_failed_dependency() {
    let mut app = App::start(Mode::Distributed).await;
    let (s, b) = app.call("GET", "/api/v1/ready", None, None).await;
    assert_eq!(s, 200, "{b}");
    app.redis.as_mut().unwrap().stop();
    let body = wait_for("readiness to fail", Duration::from_secs(20), || async {
        let (s, b) = app.call("GET", "/api/v1/ready", None, None).await;
        if s == 503 {
            Ok(b)
        } else {
            Err(format!("{s} {b}"))
        }
    })
    .await;
    assert_eq!(body["error"]["details"]["dependency"], "redis", "{body}");
    // Liveness does not depend on Redis.
    let (s, _) = app.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(s, 200);
    // Nothing is lost across the restart: the queue keeps working once Redis is back.
    app.redis.as_mut().unwrap().spawn();
    wait_for("readiness to recover", Duration::from_secs(30), || async {
        let (s, b) = app.call("GET", "/api/v1/ready", None, None).await;
        if s == 200 {
            Ok(())
        } else {
            Err(format!("{s} {b}"))
        }
    })
    .await;
    let t = app
        .create_task(serde_json::json!({"type": "generic", "payload": {"after": "restart"}}))
        .await;
    app.wait_status(
        t["id"].as_str().unwrap(),
        "completed",
        Duration::from_secs(30),
    )
    .await;
}

#[test]
fn kubernetes_manifests_are_valid() {
    let manifests: Vec<_> = std::fs::read_dir(repo().join("k8s"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    assert!(manifests.len() >= 4, "k8s/ holds the manifests");
    let out = python_module("kubernetes_validate")
        .arg("--strict")
        .args(&manifests)
        .output()
        .expect("kubernetes-validate runs");
    assert!(
        out.status.success(),
        "invalid manifests:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs `docker compose` (the Docker CLI plugin); run with `./scripts/test.sh -- --ignored`"]
fn compose_file_is_valid() {
    let out = Command::new("docker")
        .args(["compose", "-f"])
        .arg(repo().join("docker/compose.yaml"))
        .args(["config", "--quiet"])
        .output()
        .expect("docker compose is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mcp-api migrate status | down [N] | up` on a database the server created and used: rolling
/// back names what it undid, status shows it pending, and up followed by a start brings back a
/// server that still has its data.
async fn migrations_go_both_ways(mode: Mode) {
    let mut app = App::start(mode).await;
    let task = app
        .create_task(serde_json::json!({"type": "generic", "payload": {"kept": true}}))
        .await;
    let id = task["id"].as_str().unwrap().to_string();
    app.wait_status(&id, "completed", Duration::from_secs(30))
        .await;
    // Migrations are rolled back with the servers stopped.
    app.kill_api();
    app.kill_worker();

    // The listing only: the database's own notices may be logged around it.
    let status = |app: &App| {
        let (ok, out) = app.run_api_command(&["migrate", "status"]);
        assert!(ok, "{out}");
        out.lines()
            .filter(|l| !l.contains(" INFO ") && !l.contains(" WARN "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = status(&app);
    let last = before
        .lines()
        .rfind(|l| l.starts_with("applied"))
        .unwrap_or_else(|| panic!("{before}"))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(before.contains(" 0 pending"), "{before}");

    let (ok, out) = app.run_api_command(&["migrate", "down", "2"]);
    assert!(ok, "{out}");
    assert_eq!(out.matches("rolled back ").count(), 2, "{out}");
    assert!(out.contains(&last), "the newest goes first: {out}");
    let after = status(&app);
    assert!(after.contains(&format!("pending  {last}")), "{after}");
    assert!(after.contains(" 2 pending"), "{after}");

    // Bad counts change nothing.
    for bad in [
        &["migrate", "down", "0"][..],
        &["migrate", "down", "many"],
        &["migrate", "down", "9999"],
    ] {
        let (ok, out) = app.run_api_command(bad);
        assert!(!ok, "{bad:?} must fail: {out}");
    }
    assert_eq!(status(&app), after);

    let (ok, out) = app.run_api_command(&["migrate", "up"]);
    assert!(ok, "{out}");
    assert!(status(&app).contains(" 0 pending"));
    app.start_api();
    app.wait_healthy().await;
    let (code, kept) = app.admin("GET", &format!("/api/v1/tasks/{id}"), None).await;
    assert_eq!(code, 200, "{kept}");
    assert_eq!(kept["data"]["payload"]["kept"], true, "{kept}");
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_go_both_ways_single_node() {
    migrations_go_both_ways(Mode::SingleNode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_go_both_ways_distributed() {
    migrations_go_both_ways(Mode::Distributed).await;
}

/// On start the server says where to go, on the address it really bound (the tests bind port
/// 0), and how to log in.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_start_says_where_to_go() {
    let app = App::start(Mode::SingleNode).await;
    let base = format!("http://127.0.0.1:{}", app.port);
    let log = std::fs::read_to_string(app.dir.path().join("api.log")).unwrap();
    for place in ["/api/v1", "/docs", "/dashboard", "/mcp"] {
        assert!(
            log.contains(&format!("{base}{place}")),
            "{place} missing:\n{log}"
        );
    }
    assert!(log.contains("/api/v1/auth/login"), "{log}");
    assert!(log.contains("mcp-api admin create"), "{log}");
    // And each place answers there.
    for (place, want) in [("/docs", 200), ("/dashboard", 200), ("/api/v1/health", 200)] {
        let (code, _) = app.call("GET", place, None, None).await;
        assert_eq!(code, want, "{place}");
    }
}

/// A worker process with `MCP_WORKER_PORT` answers its orchestrator's probes and its scraper:
/// ready once registered and while Redis answers, and counting the jobs it runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_serves_health_readiness_and_metrics_on_its_own_port() {
    let mut app = App::start(Mode::Distributed).await;
    let port = crate::helpers::servers::free_port();
    app.set_env(&[("MCP_WORKER_PORT", &port.to_string())]);
    // This worker alone serves `generic`: the app's own is gone.
    app.kill_worker();
    app.start_worker(&["--capabilities", "generic"]);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        async move {
            match http.get(url).send().await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(e) => (0, e.to_string()),
            }
        }
    };
    wait_for(
        "the worker to be ready",
        Duration::from_secs(30),
        || async {
            match get("/ready").await {
                (200, body) if body.contains("\"ready\"") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(get("/health").await.0, 200);

    for n in 0..5 {
        let t = app
            .create_task(serde_json::json!({"type": "generic", "payload": {"n": n}}))
            .await;
        app.wait_status(
            t["id"].as_str().unwrap(),
            "completed",
            Duration::from_secs(30),
        )
        .await;
    }
    let (status, text) = get("/metrics").await;
    assert_eq!(status, 200, "{text}");
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    assert!(value("mcp_worker_jobs_done_total") >= 5.0, "{text}");
    assert_eq!(value("mcp_worker_registered"), 1.0, "{text}");
    assert_eq!(value("mcp_worker_jobs_running"), 0.0, "{text}");

    // Without its queue the worker is alive but not ready, and says why.
    app.redis.as_mut().unwrap().stop();
    let body = wait_for("readiness to fail", Duration::from_secs(30), || async {
        match get("/ready").await {
            (503, body) => Ok(body),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(body.contains("queue"), "{body}");
    assert_eq!(get("/health").await.0, 200);
}
