//! The operator dashboard at `/dashboard`, in a real browser: headless Chromium driven by
//! `chromedriver` over the W3C WebDriver protocol (plain HTTP through reqwest), against the real
//! API and stage workers.

use std::{
    io::{Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

use crate::helpers::{
    App, Mode,
    app::{ADMIN, ADMIN_PASSWORD},
    servers::{TempDir, free_port},
    synth, wait_for,
};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const VIEWER: &str = "watcher";
const VIEWER_PASSWORD: &str = "a-long-viewer-passphrase";

/// One headless Chromium behind its own chromedriver, in its own profile directory.
struct Browser {
    http: reqwest::Client,
    port: u16,
    session: String,
    driver: Child,
    dir: TempDir,
}

impl Browser {
    async fn start() -> Self {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is not installed; the dashboard tests drive headless Chromium: install the \
                 Debian packages `chromium` and `chromium-driver` (./scripts/test.sh does)"
            );
        }
        let dir = TempDir::new("browser");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("chromedriver.log")).unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let status = format!("http://127.0.0.1:{port}/status");
        wait_for(
            "chromedriver to be ready",
            Duration::from_secs(30),
            || async {
                match http.get(&status).send().await {
                    Ok(r) => {
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        if body["value"]["ready"] == true {
                            Ok(())
                        } else {
                            Err(body.to_string())
                        }
                    }
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;
        let profile = dir.path().join("profile");
        let mut browser = Self {
            http,
            port,
            session: String::new(),
            driver,
            dir,
        };
        let created = browser
            .command(
                "POST",
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-dev-shm-usage",
                            "--disable-gpu",
                            "--window-size=1280,1024",
                            format!("--user-data-dir={}", profile.display()),
                        ],
                    },
                    "goog:loggingPrefs": {"browser": "ALL"},
                }}})),
            )
            .await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session in {created}"))
            .to_string();
        browser
    }

    /// Sends a WebDriver command and returns its `value`; a WebDriver error panics with its
    /// message.
    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_command(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path} failed: {e}"),
        }
    }

    async fn try_command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut req = self.http.request(
            method.parse().unwrap(),
            format!("http://127.0.0.1:{}{path}", self.port),
        );
        // Chromedriver wants a JSON body on every POST, even an empty one.
        if method == "POST" {
            req = req.json(&body.unwrap_or_else(|| json!({})));
        }
        let resp = req.send().await.expect("chromedriver answers");
        let ok = resp.status().is_success();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if ok {
            Ok(body["value"].clone())
        } else {
            Err(body["value"].clone())
        }
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    async fn goto(&self, url: &str) {
        self.command("POST", &self.at("/url"), Some(json!({"url": url})))
            .await;
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .command(
                "POST",
                &self.at("/elements"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
            .collect()
    }

    async fn find(&self, css: &str) -> Option<String> {
        self.find_all(css).await.into_iter().next()
    }

    /// The element's rendered text, or `None` when there is no such element (or it went stale
    /// between finding and reading, as live rows do).
    async fn text(&self, css: &str) -> Option<String> {
        let id = self.find(css).await?;
        self.try_command("GET", &self.at(&format!("/element/{id}/text")), None)
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    }

    async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let id = self.find(css).await?;
        self.try_command(
            "GET",
            &self.at(&format!("/element/{id}/attribute/{name}")),
            None,
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
    }

    async fn displayed(&self, css: &str) -> bool {
        let Some(id) = self.find(css).await else {
            return false;
        };
        self.try_command("GET", &self.at(&format!("/element/{id}/displayed")), None)
            .await
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await.unwrap_or_else(|| panic!("no {css}"));
        self.command("POST", &self.at(&format!("/element/{id}/clear")), None)
            .await;
        self.command(
            "POST",
            &self.at(&format!("/element/{id}/value")),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await.unwrap_or_else(|| panic!("no {css}"));
        self.command("POST", &self.at(&format!("/element/{id}/click")), None)
            .await;
    }

    /// Polls the text of `css` until `accept` takes it.
    async fn wait_text(&self, what: &str, css: &str, accept: impl Fn(&str) -> bool) -> String {
        wait_for(what, Duration::from_secs(30), || async {
            match self.text(css).await {
                Some(t) if accept(&t) => Ok(t),
                other => Err(format!("{css}: {other:?}")),
            }
        })
        .await
    }

    /// Runs `script` in the page and returns what it returns.
    async fn execute(&self, script: &str) -> Value {
        self.command(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Browser console entries at level SEVERE since the last call (errors, CSP violations,
    /// failed loads).
    async fn console_errors(&self) -> Vec<Value> {
        let log = self
            .command(
                "POST",
                &self.at("/se/log"),
                Some(json!({"type": "browser"})),
            )
            .await;
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .cloned()
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session makes chromedriver close Chromium; killing chromedriver alone would
        // leave the browser running. Plain blocking HTTP: this runs outside any runtime.
        if !self.session.is_empty()
            && let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port))
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                stream,
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = stream.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        if std::thread::panicking()
            && let Ok(log) = std::fs::read_to_string(self.dir.path().join("chromedriver.log"))
        {
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!("--- last lines of chromedriver.log ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Publishes a `system.alert` on the app's event stream, as the alerting does.
fn publish_alert(app: &App, data: Value) {
    let redis = app
        .redis
        .as_ref()
        .expect("alerts go through Redis in distributed mode");
    let event = json!({"type": "system.alert", "ts": chrono::Utc::now(), "data": data});
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "XADD",
            "mcp:events",
            "*",
            "e",
        ])
        .arg(event.to_string())
        .output()
        .expect("redis-cli runs");
    assert!(
        out.status.success(),
        "XADD failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stage_selector(execution: &str, stage: &str) -> String {
    format!(r#"li[data-execution-id="{execution}"] li[data-stage="{stage}"]"#)
}

/// Polls the page until the execution's six stages show completed, in order, and the execution
/// with them.
async fn wait_for_stages(browser: &Browser, execution: &str) {
    let card = format!(r#"li[data-execution-id="{execution}"]"#);
    let stages = [
        "ingestion",
        "standardization",
        "validation",
        "processing",
        "quality_assessment",
        "export",
    ];
    wait_for(
        &format!("the six stages of {execution} to complete on the page"),
        Duration::from_secs(120),
        || async {
            let mut states = Vec::new();
            for stage in stages {
                let s = browser
                    .attribute(&stage_selector(execution, stage), "data-status")
                    .await
                    .unwrap_or_default();
                states.push(s);
            }
            // A later stage never completes before an earlier one on the page.
            let done = states.iter().take_while(|s| *s == "completed").count();
            assert!(
                states[done..].iter().all(|s| s != "completed"),
                "stages out of order: {states:?}"
            );
            let status = browser.attribute(&card, "data-status").await;
            if done == stages.len() && status.as_deref() == Some("completed") {
                Ok(())
            } else {
                Err(format!("{states:?}, execution {status:?}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn dashboard_follows_a_pipeline_agents_and_queues_live_in_a_browser() {
    // The API is killed mid-run below: a job it was pushing as it died is pushed again after
    // this long, instead of the default two minutes.
    let mut app = App::start_with(Mode::Distributed, &[("MCP_REDELIVER_AFTER_MS", "2000")]).await;
    app.start_stage_workers(1).await;
    let (status, body) = app
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"username": VIEWER, "password": VIEWER_PASSWORD, "role": "viewer"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let browser = Browser::start().await;
    browser.goto(&format!("{}/dashboard", app.base)).await;
    assert!(browser.displayed("#login-form").await);
    assert!(
        !browser.displayed("#board").await,
        "the board shows before login"
    );
    let unlabelled = browser
        .execute(
            "return [...document.querySelectorAll('input, button')]\
               .filter(e => !(e.labels?.length || e.textContent.trim())).map(e => e.id)",
        )
        .await;
    assert_eq!(unlabelled, json!([]), "form controls without a label");

    // A wrong password is refused on the form with the API's message.
    browser.type_into("#username", VIEWER).await;
    browser.type_into("#password", "not-the-password").await;
    browser.click("#login-submit").await;
    browser
        .wait_text("the login error", "#login-error", |t| {
            t.contains("invalid username or password")
        })
        .await;
    assert!(!browser.displayed("#board").await);
    // The refused login is the only thing the console may show: the browser reports the 401.
    for entry in browser.console_errors().await {
        let message = entry["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("/api/v1/auth/login") && message.contains("401"),
            "unexpected console error: {entry}"
        );
    }

    browser.type_into("#password", VIEWER_PASSWORD).await;
    browser.click("#login-submit").await;
    browser
        .wait_text("all four channels to be live", "#connection", |t| {
            t == "Live"
        })
        .await;
    assert!(browser.displayed("#board").await);
    assert!(!browser.displayed("#login-form").await);

    // Agents: every registered agent has a row with its name and status.
    let agents = wait_for(
        "a row per stage worker",
        Duration::from_secs(30),
        || async {
            let rows = browser.find_all("#agents tbody tr").await;
            if rows.len() >= 6 {
                Ok(rows.len())
            } else {
                Err(format!("{} rows", rows.len()))
            }
        },
    )
    .await;
    let (_, discovered) = app
        .admin("GET", "/api/v1/agents/discover?limit=1000", None)
        .await;
    assert_eq!(agents as u64, discovered["count"].as_u64().unwrap());
    let first = discovered["data"][0].clone();
    let row = format!(
        r#"#agents tr[data-agent-id="{}"]"#,
        first["id"].as_str().unwrap()
    );
    let text = browser.text(&row).await.expect("the agent's row");
    assert!(text.contains(first["name"].as_str().unwrap()), "{text}");
    assert!(
        text.contains(first["status"].as_str().unwrap()),
        "{text} vs {first}"
    );

    // Alerts: an alert raised on the bus shows with its severity, state and message.
    publish_alert(
        &app,
        json!({"alert": "queue_backlog", "state": "raised", "severity": "warning",
               "message": "stage_validation has 12000 tasks waiting"}),
    );
    let alert = browser
        .wait_text(
            "the raised alert",
            r#"#alerts li[data-alert="queue_backlog"][data-state="raised"]"#,
            |t| t.contains("stage_validation has 12000 tasks waiting"),
        )
        .await;
    assert!(
        alert.contains("warning") && alert.contains("queue backlog"),
        "{alert}"
    );
    assert!(!browser.displayed("#alerts-empty").await);

    // Queues: the initial figures are there before any pipeline ran.
    browser
        .wait_text(
            "the generic queue row",
            r#"#queues tr[data-capability="generic"] td[data-col="processed"]"#,
            |t| t == "0",
        )
        .await;
    assert!(
        browser
            .find(r#"#queues tr[data-capability="stage_export"]"#)
            .await
            .is_none(),
        "no stage queue exists yet"
    );

    // Another client submits a pipeline; the page learns of it only from the channels.
    let (status, uploaded) = app
        .upload("application/x-ndjson", synth::ndjson(11, 3000))
        .await;
    assert_eq!(status, 201, "{uploaded}");
    let execution = app
        .start_execution(&uploaded["data"]["dataset_id"], json!({"shard_size": 1000}))
        .await;
    let card = format!(r#"li[data-execution-id="{execution}"]"#);
    wait_for(
        "the execution to appear",
        Duration::from_secs(30),
        || async {
            browser
                .find(&card)
                .await
                .ok_or_else(|| "not on the page".to_string())
        },
    )
    .await;

    // Its six stages complete on the page, in order, and the execution with them.
    wait_for_stages(&browser, &execution).await;
    let finished = app
        .wait_execution(&execution, Duration::from_secs(30))
        .await;
    assert_eq!(finished["status"], "completed", "{finished}");
    let records_out = finished["results"]["records_out"].as_u64().unwrap();
    let export = browser
        .text(&format!(
            "{} .stage-detail",
            stage_selector(&execution, "export")
        ))
        .await
        .unwrap();
    assert_eq!(export, format!("{records_out} in, {records_out} out"));
    let overall = browser
        .attribute(&format!("{card} > progress"), "value")
        .await;
    assert_eq!(overall.as_deref(), Some("100"));

    // Queues: the stage queues showed up and their counts follow the task events to the
    // server's figures.
    // The server's counts are refreshed on a short period: wait until they have settled.
    let queues = wait_for(
        "the stage queues' counts to settle",
        Duration::from_secs(30),
        || async {
            let (_, queues) = app.admin("GET", "/api/v1/queues", None).await;
            let settled = queues["data"].as_array().is_some_and(|qs| {
                qs.iter()
                    .filter(|q| {
                        q["capability"]
                            .as_str()
                            .is_some_and(|c| c.starts_with("stage_"))
                    })
                    .all(|q| q["running"] == 0 && q["processed_total"] != 0)
            });
            if settled {
                Ok(queues)
            } else {
                Err(queues.to_string())
            }
        },
    )
    .await;
    for q in queues["data"].as_array().unwrap() {
        let capability = q["capability"].as_str().unwrap();
        if !capability.starts_with("stage_") {
            continue;
        }
        let want = q["processed_total"].to_string();
        assert_ne!(want, "0", "{q}");
        browser
            .wait_text(
                &format!("{capability} processed count"),
                &format!(r#"#queues tr[data-capability="{capability}"] td[data-col="processed"]"#),
                |t| t == want,
            )
            .await;
        for tier in ["critical", "high", "medium", "low"] {
            let shown = browser
                .text(&format!(
                    r#"#queues tr[data-capability="{capability}"] td[data-col="{tier}"]"#
                ))
                .await;
            assert_eq!(
                shown,
                Some(q["pending"][tier].to_string()),
                "{capability} {tier}"
            );
        }
    }

    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // The API restarts while a second execution runs: the page notices, reconnects (resuming
    // after the last event it saw) and follows the execution to its end.
    let second = app
        .start_execution(&uploaded["data"]["dataset_id"], json!({"shard_size": 1000}))
        .await;
    let ingestion = stage_selector(&second, "ingestion");
    wait_for(
        "the second execution to start on the page",
        Duration::from_secs(30),
        || async {
            match browser.attribute(&ingestion, "data-status").await {
                Some(s) if s != "pending" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    app.kill_api();
    browser
        .wait_text("the page to notice the drop", "#connection", |t| {
            t.starts_with("Connecting")
        })
        .await;
    // Published while the page is cut off: only a replay after its last event can bring it.
    publish_alert(
        &app,
        json!({"alert": "queue_backlog", "state": "cleared", "severity": "warning",
               "message": "stage_validation is draining"}),
    );
    app.start_api();
    app.wait_healthy().await;
    browser
        .wait_text("the channels to be live again", "#connection", |t| {
            t == "Live"
        })
        .await;
    wait_for_stages(&browser, &second).await;
    browser
        .wait_text(
            "the alert cleared while the page was disconnected",
            r#"#alerts li[data-alert="queue_backlog"][data-state="cleared"]"#,
            |t| t.contains("stage_validation is draining"),
        )
        .await;
    // Nothing was refused along the way.
    for note in [
        "#queues-note",
        "#pipelines-note",
        "#agents-note",
        "#alerts-note",
    ] {
        assert_eq!(browser.text(note).await.as_deref(), Some(""), "{note}");
    }
    let finished = app.wait_execution(&second, Duration::from_secs(30)).await;
    assert_eq!(finished["status"], "completed", "{finished}");
    // While the API was down the browser reported the refused connections, and nothing else.
    for entry in browser.console_errors().await {
        let message = entry["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("WebSocket connection to") || message.contains("net::ERR_CONNECTION"),
            "unexpected console error: {entry}"
        );
    }

    // Signing out forgets the session and shows the form again.
    browser.click("#logout").await;
    wait_for(
        "the login form after sign-out",
        Duration::from_secs(10),
        || async {
            if browser.displayed("#login-form").await && !browser.displayed("#board").await {
                Ok(())
            } else {
                Err("board still shown".into())
            }
        },
    )
    .await;
    browser
        .wait_text("the connection state", "#connection", |t| t == "Signed out")
        .await;
}

#[tokio::test]
async fn dashboard_is_served_with_its_own_content_policy_and_can_be_switched_off() {
    let app = App::start(Mode::SingleNode).await;
    let page = app.send("GET", "/dashboard", None, None).await;
    assert_eq!(page.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let csp = header(&page, "content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let etag = header(&page, "etag");
    let html = page.text().await.unwrap();
    let script = html
        .split('"')
        .find(|s| s.starts_with("/dashboard/app.js?v="))
        .expect("the page names its script by version")
        .to_string();

    // The versioned script is cached for good; the page is revalidated by its ETag.
    let js = app.send("GET", &script, None, None).await;
    assert_eq!(js.status(), 200);
    assert_eq!(
        header(&js, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        header(&js, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    let again = app
        .http
        .get(format!("{}/dashboard", app.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // Small enough to load at once on any link.
    let mut weight = html.len();
    for file in [
        "/dashboard/app.js",
        "/dashboard/style.css",
        "/dashboard/icon.svg",
    ] {
        let (status, body) = {
            let r = app.send("GET", file, None, None).await;
            (r.status(), r.text().await.unwrap())
        };
        assert_eq!(status, 200, "{file}");
        weight += body.len();
    }
    assert!(weight < 48 * 1024, "the page weighs {weight} bytes");

    // The rest of the API keeps its deny-all policy.
    let health = app.send("GET", "/api/v1/health", None, None).await;
    assert_eq!(
        header(&health, "content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'"
    );

    let off = App::start_with(Mode::SingleNode, &[("MCP_DASHBOARD", "false")]).await;
    let (status, body) = off.call("GET", "/dashboard", None, None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
}

#[tokio::test]
async fn dashboard_renews_its_access_token_with_the_refresh_token() {
    // Access tokens live 31 s and the page renews 30 s before expiry: from a second after
    // sign-in, its next API call renews first.
    let app = App::start_with(Mode::SingleNode, &[("JWT_ACCESS_TOKEN_EXPIRES", "31")]).await;
    let (status, body) = app
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"username": VIEWER, "password": VIEWER_PASSWORD, "role": "viewer"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let browser = Browser::start().await;
    browser.goto(&format!("{}/dashboard", app.base)).await;
    browser.type_into("#username", VIEWER).await;
    browser.type_into("#password", VIEWER_PASSWORD).await;
    browser.click("#login-submit").await;
    browser
        .wait_text("the channels to be live", "#connection", |t| t == "Live")
        .await;
    let first = stored_credentials(&browser).await;

    // Each task makes the page re-read the queues; one of those reads comes after the renewal
    // point and renews first.
    let admin = app.login(ADMIN, ADMIN_PASSWORD).await;
    let mut created = 0u32;
    let renewed = wait_for(
        "the page to renew its token",
        Duration::from_secs(30),
        async || {
            created += 1;
            let (status, body) = app
                .call(
                    "POST",
                    "/api/v1/tasks",
                    Some(&admin),
                    Some(json!({"type": "generic", "payload": {"n": created}})),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            let want = created.to_string();
            browser
                .wait_text(
                    "the page to count the task",
                    r#"#queues tr[data-capability="generic"] td[data-col="processed"]"#,
                    |t| t == want,
                )
                .await;
            let now = stored_credentials(&browser).await;
            if now["access"] != first["access"] {
                Ok(now)
            } else {
                Err(format!("the same token after {created} tasks"))
            }
        },
    )
    .await;
    assert_ne!(renewed["refresh"], first["refresh"]);
    // The page spent the first refresh token: it works once.
    let (status, body) = app.refresh(&first["refresh"]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        browser.text("#connection").await.as_deref(),
        Some("Live"),
        "the channels stayed up"
    );
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// What the page keeps in its tab's sessionStorage.
async fn stored_credentials(browser: &Browser) -> Value {
    let raw = browser
        .execute("return sessionStorage.getItem('mcp.dashboard.auth')")
        .await;
    serde_json::from_str(raw.as_str().expect("credentials in sessionStorage")).unwrap()
}

#[tokio::test]
async fn dashboard_shows_what_work_nothing_serves_is_waiting_for() {
    // The embedded workers serve no stage: a pipeline waits on `stage_ingestion`.
    let app = App::start_with(
        Mode::SingleNode,
        &[
            ("MCP_EMBEDDED_CAPABILITIES", "generic"),
            ("MCP_ALERT_INTERVAL_MS", "50"),
            ("MCP_ALERT_UNSERVED_AFTER_MS", "300"),
        ],
    )
    .await;
    let (status, dataset) = app
        .upload("application/x-ndjson", synth::ndjson(5, 20))
        .await;
    assert_eq!(status, 201, "{dataset}");
    let dataset_id = dataset["data"]["dataset_id"].clone();
    app.start_execution(&dataset_id, json!({})).await;
    wait_for(
        "the queue_unserved alert",
        Duration::from_secs(30),
        || async {
            let (_, health) = app.admin("GET", "/api/v1/system/health", None).await;
            let raised = health["data"]["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["alert"] == "queue_unserved"));
            if raised {
                Ok(())
            } else {
                Err(health.to_string())
            }
        },
    )
    .await;

    // Opened after the alert was raised, the page still lists it.
    let browser = Browser::start().await;
    browser.goto(&format!("{}/dashboard", app.base)).await;
    browser.type_into("#username", ADMIN).await;
    browser.type_into("#password", ADMIN_PASSWORD).await;
    browser.click("#login-submit").await;
    browser
        .wait_text(
            "the raised alert",
            r#"#alerts li[data-alert="queue_unserved"][data-state="raised"] .alert-message"#,
            |t| t.contains("stage_ingestion"),
        )
        .await;

    // A pipeline started now shows on its card what it waits for.
    let id = app.start_execution(&dataset_id, json!({})).await;
    let card = format!(r#"li.pipeline[data-execution-id="{id}"]"#);
    wait_for(
        "the card's waiting note",
        Duration::from_secs(30),
        || async {
            match browser
                .attribute(&card, "data-waiting-for")
                .await
                .as_deref()
            {
                Some("stage_ingestion") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let note = browser
        .text(&format!("{card} .waiting"))
        .await
        .unwrap_or_default();
    assert!(note.contains("stage_ingestion"), "{note}");
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

#[tokio::test]
async fn dashboard_lists_schedules_and_shows_a_pause() {
    let app = App::start(Mode::SingleNode).await;
    let (status, body) = app
        .admin(
            "POST",
            "/api/v1/schedules",
            Some(json!({"name": "nightly-export", "cron": "0 2 * * *",
                        "time_zone": "Europe/Paris",
                        "task": {"type": "generic", "payload": {"n": 1}}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();

    let browser = Browser::start().await;
    browser.goto(&format!("{}/dashboard", app.base)).await;
    browser.type_into("#username", ADMIN).await;
    browser.type_into("#password", ADMIN_PASSWORD).await;
    browser.click("#login-submit").await;
    let row = format!(r#"#schedules tr[data-schedule-id="{id}"]"#);
    browser
        .wait_text("the schedule's row", &format!("{row} th"), |t| {
            t == "nightly-export"
        })
        .await;
    let when = browser.text(&format!(r#"{row} td[data-col="when"]"#)).await;
    assert_eq!(when.as_deref(), Some("0 2 * * * (Europe/Paris)"));
    let next = browser.text(&format!(r#"{row} td[data-col="next"]"#)).await;
    assert!(next.is_some_and(|t| t != "—"), "no next run shown");
    assert!(!browser.displayed("#schedules-empty").await);

    let (status, body) = app
        .admin(
            "PATCH",
            &format!("/api/v1/schedules/{id}"),
            Some(json!({"paused": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    browser
        .wait_text(
            "the pause on the page",
            &format!(r#"{row} td[data-col="state"]"#),
            |t| t == "paused",
        )
        .await;
    let next = browser.text(&format!(r#"{row} td[data-col="next"]"#)).await;
    assert_eq!(next.as_deref(), Some("—"));
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
