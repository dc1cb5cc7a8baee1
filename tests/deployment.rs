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
