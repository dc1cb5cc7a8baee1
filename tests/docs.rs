//! The documentation stays true: every example in `docs/examples/` runs against a real single
//! node and succeeds, and every environment variable the binaries read has a row in
//! `docs/configuration.md`.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use regex::Regex;
use serde_json::json;

use crate::helpers::{App, Mode};

const USER: &str = "docs-operator";
const PASSWORD: &str = "docs-operator-password";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// A single node with an operator (not an admin: the examples need no more than that role).
async fn app() -> App {
    let app = App::start(Mode::SingleNode).await;
    let (status, body) = app
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"username": USER, "password": PASSWORD, "role": "operator"})),
        )
        .await;
    assert_eq!(status, 201, "operator not created: {body}");
    app
}

/// Runs an example with the documented variables; returns its standard output after asserting
/// it exited 0.
async fn run_example(app: &App, program: &str, script: &str) -> String {
    let path: PathBuf = repo().join("docs/examples").join(script);
    assert!(path.exists(), "{} is missing", path.display());
    let child = tokio::process::Command::new(program)
        .arg(&path)
        .env("MCP_URL", &app.base)
        .env("MCP_USERNAME", USER)
        .env("MCP_PASSWORD", PASSWORD)
        .env("TIMEOUT_SECONDS", "90")
        // curl and urllib honour proxy variables; the server is on loopback.
        .env("no_proxy", "127.0.0.1,localhost")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("MCP_AGENT_CAPABILITY")
        .current_dir(app.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (is it installed?): {e}"));
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 120 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "{script} exited with {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    stdout
}

fn assert_lines(script: &str, stdout: &str, expected: &[&str]) {
    for want in expected {
        assert!(
            stdout.contains(want),
            "{script} did not print {want:?}:\n{stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_sh_runs_with_posix_tools_only() {
    let app = app().await;
    let out = run_example(&app, "sh", "quickstart.sh").await;
    assert_lines(
        "quickstart.sh",
        &out,
        &[
            "logged in as docs-operator",
            "repeated the submission with the same idempotency key: 200, same task",
            "completed",
            "422 validation_failed on field priority",
            "401 unauthorized",
            "quickstart: OK",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_py_follows_a_task_and_runs_a_pipeline() {
    let app = app().await;
    let out = run_example(&app, "python3", "client.py").await;
    assert_lines(
        "client.py",
        &out,
        &[
            "logged in as docs-operator",
            "completed with result",
            "uploaded dataset",
            "3 records",
            "stage export: completed",
            "e-mail addresses redacted as [EMAIL]",
            "client.py: OK",
        ],
    );
    // What the example reports is what the server holds.
    let (_, tasks) = app.admin("GET", "/api/v1/tasks?type=generic", None).await;
    assert!(
        tasks["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["status"] == "completed" && t["payload"]["sleep_ms"] == 500),
        "{tasks}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_py_claims_reports_and_completes_one_task() {
    let app = app().await;
    let out = run_example(&app, "python3", "agent.py").await;
    assert_lines(
        "agent.py",
        &out,
        &[
            "registered agent example-agent-",
            "claimed task",
            "reported progress 75%",
            "completed task",
            "deregistered agent",
            "the agent key no longer works (401)",
            "agent.py: OK",
        ],
    );
    let (_, tasks) = app.admin("GET", "/api/v1/tasks?type=analysis", None).await;
    let done: Vec<_> = tasks["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "completed" && t["result"]["words"].is_u64())
        .collect();
    assert_eq!(done.len(), 1, "{tasks}");
    // Deregistered: the agent is gone from discovery.
    let (_, found) = app
        .admin("GET", "/api/v1/agents/discover?capability=summarize", None)
        .await;
    assert_eq!(found["count"], 0, "{found}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_mjs_follows_a_task_with_fetch_streaming() {
    let app = app().await;
    let out = run_example(&app, "node", "client.mjs").await;
    assert_lines(
        "client.mjs",
        &out,
        &[
            "logged in as docs-operator (Bearer token",
            "priority critical",
            "completed with result",
            "status: completed, progress 100",
            "client.mjs: OK",
        ],
    );
}

/// Source files of the binaries, without their `#[cfg(test)]` modules.
fn binary_sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for krate in ["api", "shared", "worker", "migrations"] {
        walk(&repo().join(krate).join("src"), &mut files);
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = match text.find("#[cfg(test)]") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            (path, code)
        })
        .collect()
}

/// Every environment variable name the binaries read.
fn variables_read() -> BTreeSet<String> {
    // `std::env::var("X")`, `env::var_os("X")`, anywhere.
    let direct = Regex::new(r#"env::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)""#).unwrap();
    // The settings loader reads through small functions (`var("X")`, `parse(&var, "X", …)`,
    // `secret("X")`, and whatever is added next): any call whose first argument, or second
    // after a `&lookup`, is an upper-case string literal.
    let loader =
        Regex::new(r#"\b[a-z_][a-z0-9_]*\(\s*(?:&[a-z_][a-z0-9_]*\s*,\s*)?"([A-Z][A-Z0-9_]*)""#)
            .unwrap();
    let mut names = BTreeSet::new();
    for (path, code) in binary_sources() {
        for c in direct.captures_iter(&code) {
            names.insert(c[1].to_string());
        }
        if path.ends_with("shared/src/config.rs") {
            for c in loader.captures_iter(&code) {
                names.insert(c[1].to_string());
            }
        }
        // Libraries that read the environment themselves.
        if code.contains("EnvFilter::try_from_default_env") || code.contains("from_default_env") {
            names.insert("RUST_LOG".into());
        }
        if code.contains("AmazonS3Builder::from_env") {
            for v in [
                "AWS_ENDPOINT",
                "AWS_REGION",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_ALLOW_HTTP",
            ] {
                names.insert(v.into());
            }
        }
    }
    names
}

/// Names documented in a table row (a line starting with `|`) of configuration.md, in backticks.
fn variables_documented() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let name = Regex::new(r"`([A-Z][A-Z0-9_]*)`").unwrap();
    text.lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .flat_map(|l| {
            name.captures_iter(l)
                .map(|c| c[1].to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_environment_variable_read_is_documented() {
    let read = variables_read();
    // The scan itself works: it finds variables read in each of the ways the code reads them.
    for known in [
        "MCP_PORT",
        "DATABASE_URL",
        "JWT_SECRET_KEY",
        "MCP_EMBEDDED_WORKERS",
        "AGENT_ASSIGNMENT_TIMEOUT",
        "MCP_ENABLE_TEST_HOOKS",
        "HOSTNAME",
        "RUST_LOG",
    ] {
        assert!(
            read.contains(known),
            "the scan missed {known}; found {read:?}"
        );
    }
    let documented = variables_documented();
    let missing: Vec<&String> = read.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "read by the code but without a row in docs/configuration.md: {missing:?}"
    );
}

/// Relative links between the guides, the examples and the repository point at files that exist,
/// and every example is referenced from the guides.
#[test]
fn documentation_links_resolve() {
    let docs = repo().join("docs");
    let link = Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut referenced = BTreeSet::new();
    let mut broken = Vec::new();
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&docs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 8, "guides missing from docs/: {pages:?}");
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for c in link.captures_iter(&text) {
            let target = &c[1];
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let path = target.split('#').next().unwrap();
            if path.is_empty() {
                continue;
            }
            let resolved = docs.join(path);
            if !resolved.exists() {
                broken.push(format!("{}: {target}", page.display()));
            }
            if let Some(name) = resolved.file_name() {
                referenced.insert(name.to_string_lossy().to_string());
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:?}");
    for example in std::fs::read_dir(docs.join("examples")).unwrap() {
        let name = example.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            referenced.contains(&name),
            "docs/examples/{name} is not referenced from any guide"
        );
    }
}
