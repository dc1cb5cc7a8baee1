//! No PII or secret reaches the logs: unique canaries — personal data and credentials — go in
//! through every input path of a distributed deployment running at `RUST_LOG=debug`, then every
//! file the processes wrote is scanned for them.
//!
//! Each input path is one `seed_*` function that sends its canaries and records them in
//! [`Canaries`], saying where the raw value may legitimately be kept ([`Kept`]). A new input
//! path is one more such function and one line in the test.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use futures::StreamExt;
use serde_json::json;
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::helpers::{App, Mode, servers::TempDir, wait_for};

/// Where a canary's raw value may be stored besides going nowhere near a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// Nowhere: not in logs, the database or any artifact (credentials, sealed fields,
    /// redacted metadata).
    Nowhere,
    /// In the database, as the data it is (a task payload or result).
    Database,
    /// In the uploaded dataset and the stage artifacts before validation redacts it; never in
    /// an export.
    Dataset,
}

struct Canary {
    what: String,
    /// The raw value and any shorter form whose appearance would also be a leak (a JWT's
    /// signature, a card number without its spaces).
    forms: Vec<String>,
    kept: Kept,
}

#[derive(Default)]
struct Canaries {
    /// Unique to this run, so a canary cannot appear by chance.
    tag: String,
    digits: Vec<u8>,
    list: Vec<Canary>,
    /// Ids that must appear in the logs, so the scan is known to read what was written.
    markers: Vec<String>,
    /// (a log message, what must be on its line): redactions the running processes made.
    redacted_markers: Vec<(String, String)>,
}

impl Canaries {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4();
        let tag = id.simple().to_string()[..12].to_string();
        // A stream of decimal digits for phone numbers, SSNs and cards.
        let digits = (0..6)
            .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
            .flat_map(|b| [b / 26 % 10, b % 10])
            .collect();
        Self {
            tag,
            digits,
            ..Self::default()
        }
    }

    /// `n` digits (the first one from 2–9, as phone exchanges and SSN areas need).
    fn number(&mut self, n: usize) -> String {
        let mut s: String = self
            .digits
            .drain(..n)
            .map(|d| char::from(b'0' + d))
            .collect();
        if s.starts_with(['0', '1']) || s.starts_with('9') {
            s.replace_range(..1, "7");
        }
        s
    }

    fn add(&mut self, what: &str, value: &str, kept: Kept) -> String {
        self.add_forms(what, &[value], kept);
        value.to_string()
    }

    fn add_forms(&mut self, what: &str, forms: &[&str], kept: Kept) {
        self.list.push(Canary {
            what: what.to_string(),
            forms: forms.iter().map(|s| s.to_string()).collect(),
            kept,
        });
    }

    /// A JWT from the API: the whole token and its signature are canaries.
    fn add_jwt(&mut self, what: &str, token: &str) {
        let signature = token.rsplit('.').next().unwrap_or(token);
        self.add_forms(what, &[token, signature], Kept::Nowhere);
    }
}

/// A Luhn-valid 16-digit Visa number, grouped in fours.
fn card_number(c: &mut Canaries) -> String {
    let mut digits: Vec<u32> = format!("4{}", c.number(14))
        .chars()
        .map(|ch| ch.to_digit(10).unwrap())
        .collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    digits.push((10 - sum % 10) % 10);
    let s: String = digits
        .iter()
        .map(|d| char::from_digit(*d, 10).unwrap())
        .collect();
    format!("{} {} {} {}", &s[..4], &s[4..8], &s[8..12], &s[12..])
}

/// A US SSN (area 200–899 without 666, group and serial non-zero).
fn ssn(c: &mut Canaries) -> String {
    let mut area = c.number(3);
    if area == "666" {
        area = "667".into();
    }
    let group = format!("{:02}", c.number(2).parse::<u32>().unwrap().max(10));
    let serial = format!("{:04}", c.number(4).parse::<u32>().unwrap().max(1000));
    format!("{area}-{group}-{serial}")
}

/// A NANP phone number: (area) exchange-line.
fn phone(c: &mut Canaries) -> (String, String) {
    let (area, exchange, line) = (c.number(3), c.number(3), c.number(4));
    (
        format!("({area}) {exchange}-{line}"),
        format!("{exchange}-{line}"),
    )
}

// ---------------------------------------------------------------------------------------------
// Input paths
// ---------------------------------------------------------------------------------------------

/// Logins: a wrong password for an e-mail username, a real user's tokens, refresh and reuse of a
/// refresh token, forged credentials in `Authorization`.
async fn seed_auth(app: &App, c: &mut Canaries) -> String {
    let tag = c.tag.clone();
    let email = c.add(
        "login username (e-mail)",
        &format!("login.{tag}@canary-mail.org"),
        Kept::Database,
    );
    let wrong = c.add(
        "wrong password",
        &format!("wrong-pw-canary-{tag}"),
        Kept::Nowhere,
    );
    let (s, b) = app.try_login(&email, &wrong).await;
    assert_eq!(s, 401, "{b}");

    // A user created by the CLI (as operators do) and one created over the API.
    let username = format!("canary_{tag}");
    let password = c.add(
        "user password (CLI)",
        &format!("cli-pw-canary-{tag}"),
        Kept::Nowhere,
    );
    app.create_user_cli(&username, &password, "operator");
    let api_password = c.add(
        "user password (API)",
        &format!("api-pw-canary-{tag}"),
        Kept::Nowhere,
    );
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"username": format!("api_{tag}"), "password": api_password, "role": "viewer"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = app.try_login(&format!("api_{tag}"), &api_password).await;
    assert_eq!(s, 200, "{b}");

    let (s, b) = app.try_login(&username, &password).await;
    assert_eq!(s, 200, "{b}");
    let access = b["data"]["access_token"].as_str().unwrap().to_string();
    let refresh = b["data"]["refresh_token"].as_str().unwrap().to_string();
    c.add_jwt("access token", &access);
    c.add_jwt("refresh token", &refresh);

    let (s, b) = app.refresh(&refresh).await;
    assert_eq!(s, 200, "{b}");
    let access2 = b["data"]["access_token"].as_str().unwrap().to_string();
    c.add_jwt("refreshed access token", &access2);
    c.add_jwt(
        "refreshed refresh token",
        b["data"]["refresh_token"].as_str().unwrap(),
    );
    // Reuse revokes the family: the access tokens stop working, so use a fresh login after.
    let (s, b) = app.refresh(&refresh).await;
    assert_eq!(s, 401, "{b}");

    // Forged credentials: a JWT-shaped token with a bad signature and an unknown agent key.
    let forged = format!("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJmb3JnZWQifQ.forged-signature-{tag}");
    c.add_jwt("forged JWT", &forged);
    let (s, _) = app.call("GET", "/api/v1/tasks", Some(&forged), None).await;
    assert_eq!(s, 401);
    let unknown_key = c.add(
        "unknown agent key",
        &format!("mcp_ak_unknownCanary{tag}"),
        Kept::Nowhere,
    );
    let (s, _) = app
        .as_agent("GET", "/api/v1/tasks", &unknown_key, None)
        .await;
    assert_eq!(s, 401);

    let (s, b) = app.try_login(&username, &password).await;
    assert_eq!(s, 200, "{b}");
    let token = b["data"]["access_token"].as_str().unwrap().to_string();
    c.add_jwt("second access token", &token);
    token
}

struct Agent {
    id: String,
    key: String,
    /// Beats for the agent, as a live agent does, so it never goes stale mid-test.
    heartbeat: tokio::task::JoinHandle<()>,
}

/// Registration with PII in metadata and secrets in configuration; the agent key in use.
async fn seed_agent(app: &App, c: &mut Canaries, token: &str) -> Agent {
    // A capability of the test's own, so the built-in workers never take the agent's tasks.
    app.define_capability("sentiment").await;
    let tag = c.tag.clone();
    let email = c.add(
        "agent metadata e-mail",
        &format!("owner.{tag}@canary-mail.org"),
        Kept::Nowhere,
    );
    let (phone, line) = phone(c);
    c.add_forms("agent metadata phone", &[&phone, &line], Kept::Nowhere);
    let ssn = ssn(c);
    c.add_forms(
        "agent metadata SSN",
        &[&ssn, &ssn.replace('-', "")],
        Kept::Nowhere,
    );
    let card = card_number(c);
    c.add_forms(
        "agent metadata card",
        &[&card, &card.replace(' ', "")],
        Kept::Nowhere,
    );
    let api_key = c.add(
        "configuration api_keys",
        &format!("sk-canary{tag}0123456789abcdef"),
        Kept::Nowhere,
    );
    let credential = c.add(
        "configuration credentials",
        &format!("cred-canary-{tag}"),
        Kept::Nowhere,
    );
    let secret = c.add(
        "configuration secrets",
        &format!("secret-canary-{tag}"),
        Kept::Nowhere,
    );
    let name = format!("canary-agent-{tag}");
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/agents/register",
            Some(token),
            Some(json!({
                "name": name,
                "type": "external_api",
                "capabilities": ["sentiment"],
                "max_concurrency": 4,
                "metadata": {
                    "owner": format!("contact {email} or call {phone}"),
                    "ssn": ssn,
                    "billing": format!("card {card}"),
                },
                "configuration": {
                    "region": "eu-west",
                    "api_keys": {"model": api_key},
                    "credentials": {"username": "svc", "password": credential},
                    "secrets": [secret],
                },
            })),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let id = b["data"]["agent"]["id"].as_str().unwrap().to_string();
    let key = b["data"]["agent_key"].as_str().unwrap().to_string();
    c.add("agent key", &key, Kept::Nowhere);
    let (s, b) = app
        .as_agent(
            "POST",
            &format!("/api/v1/agents/{id}/heartbeat"),
            &key,
            Some(json!({"current_load": 0})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let heartbeat = {
        let (http, url, key) = (
            app.http.clone(),
            format!("{}/api/v1/agents/{id}/heartbeat", app.base),
            key.clone(),
        );
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(200));
            loop {
                every.tick().await;
                let _ = http
                    .post(&url)
                    .header("authorization", format!("Agent {key}"))
                    .json(&json!({}))
                    .send()
                    .await;
            }
        })
    };
    Agent { id, key, heartbeat }
}

/// An agent whose name holds an e-mail address registers and never beats: the API logs it going
/// silent, by name. The name is the operator's to choose, so only the log sanitiser stands
/// between it and the logs; the placeholder in its place shows the sanitiser is at work in the
/// running binaries.
async fn seed_silent_agent(app: &App, c: &mut Canaries, token: &str) {
    let email = c.add(
        "agent name e-mail",
        &format!("intake.{}@canary-mail.org", c.tag),
        Kept::Database,
    );
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/agents/register",
            Some(token),
            Some(json!({"name": format!("intake bot of {email}"), "type": "ai_model", "capabilities": ["analysis"]})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let id = b["data"]["agent"]["id"].as_str().unwrap().to_string();
    wait_for(
        "the silent agent to go stale",
        Duration::from_secs(30),
        || async {
            let (_, b) = app
                .admin("GET", &format!("/api/v1/agents/{id}"), None)
                .await;
            match b["data"]["status"].as_str() {
                Some("stale" | "offline") => Ok(()),
                _ => Err(b.to_string()),
            }
        },
    )
    .await;
    c.redacted_markers
        .push(("agent went silent".into(), "intake bot of [EMAIL]".into()));
}

/// Task payloads for the built-in worker (one completes, one fails) and for the external agent,
/// which reports progress, a result and a failure carrying canaries.
async fn seed_tasks(app: &App, c: &mut Canaries, token: &str, agent: &Agent) {
    let tag = c.tag.clone();
    let email = c.add(
        "task payload e-mail",
        &format!("patient.{tag}@canary-mail.org"),
        Kept::Database,
    );
    let ssn = ssn(c);
    c.add_forms("task payload SSN", &[&ssn], Kept::Database);
    let password = c.add(
        "task payload password",
        &format!("payload-pw-canary-{tag}"),
        Kept::Database,
    );
    let api_key = c.add(
        "task payload API key",
        &format!("sk-payload{tag}0123456789abcdef"),
        Kept::Database,
    );
    let payload = json!({
        "note": format!("patient {email}, ssn {ssn}"),
        "password": password,
        "api_key": api_key,
    });
    let mut built_in = Vec::new();
    for fail in [false, true] {
        let mut p = payload.clone();
        p["fail"] = json!(fail);
        let (s, b) = app
            .call(
                "POST",
                "/api/v1/tasks",
                Some(token),
                Some(json!({"type": "generic", "payload": p, "max_attempts": 1})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        built_in.push(b["data"]["id"].as_str().unwrap().to_string());
    }
    app.wait_status(&built_in[0], "completed", Duration::from_secs(30))
        .await;
    app.wait_status(&built_in[1], "dead", Duration::from_secs(30))
        .await;
    // The worker logs each task it runs in a span naming the task.
    c.markers.push(built_in[0].clone());

    // The external agent takes two tasks: it completes one and fails the other.
    let result_email = c.add(
        "agent result e-mail",
        &format!("result.{tag}@canary-mail.org"),
        Kept::Database,
    );
    let result_token = c.add(
        "agent result token",
        &format!("result-token-canary-{tag}"),
        Kept::Database,
    );
    let error_email = c.add(
        "agent failure e-mail",
        &format!("failure.{tag}@canary-mail.org"),
        Kept::Database,
    );
    let error_key = c.add(
        "agent failure API key",
        &format!("sk-failure{tag}0123456789abcdef"),
        Kept::Database,
    );
    let progress_email = c.add(
        "agent progress e-mail",
        &format!("progress.{tag}@canary-mail.org"),
        Kept::Database,
    );
    for outcome in ["complete", "fail"] {
        let (s, b) = app
            .call(
                "POST",
                "/api/v1/tasks",
                Some(token),
                Some(json!({"type": "analysis", "required_capabilities": ["sentiment"], "payload": payload, "max_attempts": 1})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let (s, claimed) = app.claim(&agent.id, &agent.key, 10000).await;
        assert_eq!(s, 200, "{claimed}");
        let id = claimed["data"]["id"].as_str().unwrap().to_string();
        let (s, b) = app
            .as_agent(
                "POST",
                &format!("/api/v1/tasks/{id}/progress"),
                &agent.key,
                Some(json!({"progress": 50, "message": format!("working for {progress_email}")})),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let (path, body) = if outcome == "complete" {
            (
                "complete",
                json!({"result": {"summary": format!("reply to {result_email}"), "token": result_token}}),
            )
        } else {
            (
                "fail",
                json!({"error": format!("upstream refused key {error_key} for {error_email}"), "retryable": false}),
            )
        };
        let (s, b) = app
            .as_agent(
                "POST",
                &format!("/api/v1/tasks/{id}/{path}"),
                &agent.key,
                Some(body),
            )
            .await;
        assert_eq!(s, 200, "{outcome}: {b}");
    }
}

/// WebSocket connections authenticated by `?token=`: a user's JWT, an agent key, a forged JWT.
/// Sensitive payload fields: sealed at rest, so kept nowhere in clear — not even in the result
/// of the built-in handler, which echoes its payload.
async fn seed_sealed_fields(app: &App, c: &mut Canaries, token: &str) {
    let tag = c.tag.clone();
    let ssn = ssn(c);
    c.add_forms("sealed task SSN", &[&ssn], Kept::Nowhere);
    let secret = c.add(
        "sealed task token",
        &format!("sealed-token-canary-{tag}"),
        Kept::Nowhere,
    );
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/tasks",
            Some(token),
            Some(json!({"type": "generic",
                        "payload": {"patient": {"ssn": ssn}, "token": secret, "plain": "visible"},
                        "sensitive_fields": ["/patient/ssn", "/token"]})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let id = b["data"]["id"].as_str().unwrap().to_string();
    let done = app
        .wait_status(&id, "completed", Duration::from_secs(30))
        .await;
    assert_eq!(done["status"], "completed");
    let (_, task) = app
        .call("GET", &format!("/api/v1/tasks/{id}"), Some(token), None)
        .await;
    assert!(
        task["data"]["payload"]["token"].get("$sealed").is_some(),
        "{task}"
    );
    assert_eq!(
        task["data"]["result"]["plain"], "visible",
        "the handler ran: {task}"
    );
    assert!(
        task["data"]["result"]["token"].get("$sealed").is_some(),
        "{task}"
    );
}

async fn seed_websocket(app: &App, c: &mut Canaries, token: &str, agent: &Agent) {
    for (what, credential) in [("user JWT", token), ("agent key", agent.key.as_str())] {
        let url = app.ws_url(&format!("/ws/tasks/progress?token={credential}"));
        let (mut ws, _) = connect_async(url).await.expect("websocket connects");
        let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: no snapshot"));
        assert!(
            matches!(first, Some(Ok(Message::Text(_)))),
            "{what}: {first:?}"
        );
        let _ = ws.close(None).await;
    }
    let forged = format!(
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3cyJ9.ws-forged-canary-{}",
        c.tag
    );
    c.add_jwt("forged WebSocket JWT", &forged);
    let url = app.ws_url(&format!("/ws/system/events?token={forged}"));
    if let Ok((mut ws, _)) = connect_async(url).await {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        assert!(
            matches!(msg, Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_)))),
            "a forged token is refused: {msg:?}"
        );
    }
}

/// A dataset with planted PII of every kind the detector handles, through all six stages.
/// Returns the execution id and the ids of the records that must reach the export.
async fn seed_pipeline(app: &App, c: &mut Canaries) -> (String, Vec<String>) {
    let tag = c.tag.clone();
    let email = format!("dana.{tag}@canary-mail.org");
    c.add("dataset e-mail", &email, Kept::Dataset);
    let (phone, line) = phone(c);
    c.add_forms("dataset phone", &[&phone, &line], Kept::Dataset);
    let ssn = ssn(c);
    c.add_forms("dataset SSN", &[&ssn], Kept::Dataset);
    let card = card_number(c);
    c.add_forms(
        "dataset card",
        &[&card, &card.replace(' ', "")],
        Kept::Dataset,
    );
    let octets: Vec<u32> = (0..3)
        .map(|_| c.number(3).parse::<u32>().unwrap() % 250 + 2)
        .collect();
    let ipv4 = format!("10.{}.{}.{}", octets[0], octets[1], octets[2]);
    c.add("dataset IPv4", &ipv4, Kept::Dataset);
    let ipv6 = format!("2001:db8:{}::{}", &tag[..4], &tag[4..8]);
    c.add("dataset IPv6", &ipv6, Kept::Dataset);
    let street = format!("{} Kestrelvane Avenue", c.number(4));
    c.add("dataset street address", &street, Kept::Dataset);
    let (month, day) = (1 + c.digits[0] % 9, c.digits[1]);
    let dob = format!("0{month}/1{day}/19{}", c.number(2));
    c.add("dataset date of birth", &dob, Kept::Dataset);

    let conversations = [
        (
            format!("You can write to me at {email} whenever the anxiety gets bad at night."),
            "Thank you for sharing that. Writing things down when the worry starts can help too.",
        ),
        (
            format!("My sister said to call her at {phone} if I feel overwhelmed again."),
            "It sounds like she is a steady support. Would reaching out to her feel manageable?",
        ),
        (
            format!("The insurance form asked for my social security number, {ssn}, and I froze."),
            "Paperwork can feel heavy when you are already stretched thin. What happened next?",
        ),
        (
            format!("I paid the clinic with my card {card} and then regretted the cost for days."),
            "Money worries often sit alongside health worries. How are you coping with both?",
        ),
        (
            format!("The counselling portal logged me in from {ipv4} and I thought I was hacked."),
            "That must have been alarming. Did the portal team explain what the login was?",
        ),
        (
            format!("My laptop kept showing {ipv6} on the router page, which confused me."),
            "Technical glitches can add to stress. Did someone help you look into it?",
        ),
        (
            format!(
                "We moved to {street}, Springfield, IL 62704 last spring and I still feel unsettled."
            ),
            "Moving is one of the bigger life changes. What has felt hardest about the new place?",
        ),
        (
            format!("I was born on {dob}, so this birthday feels like a big milestone for me."),
            "Milestone birthdays can bring up a lot of reflection. What is on your mind about it?",
        ),
    ];
    let mut dataset = Vec::new();
    let mut ids = Vec::new();
    for (i, (user, assistant)) in conversations.iter().enumerate() {
        let id = format!("canary-{tag}-{i}");
        let record = json!({
            "id": id,
            "messages": [
                {"role": "user", "content": user},
                {"role": "assistant", "content": assistant},
            ],
        });
        serde_json::to_writer(&mut dataset, &record).unwrap();
        dataset.push(b'\n');
        ids.push(id);
    }
    // Rejected input: a malformed line and a record with an unknown role, both quoting PII. The
    // report lists rejects with reasons; the reasons must not quote the data.
    let broken_email = c.add(
        "dataset malformed line e-mail",
        &format!("broken.{tag}@canary-mail.org"),
        Kept::Dataset,
    );
    dataset.extend_from_slice(
        format!("{{\"id\": \"broken\", \"messages\": [{{\"role\": \"user\", \"content\": \"mail {broken_email}\n")
            .as_bytes(),
    );
    let rejected_email = c.add(
        "dataset rejected record e-mail",
        &format!("rejected.{tag}@canary-mail.org"),
        Kept::Dataset,
    );
    let rejected = json!({
        "id": format!("rejected-{tag}"),
        "messages": [
            {"role": "narrator", "content": format!("The narrator's address is {rejected_email}.")},
            {"role": "assistant", "content": "An unknown role makes this record invalid."},
        ],
    });
    serde_json::to_writer(&mut dataset, &rejected).unwrap();
    dataset.push(b'\n');
    let (s, b) = app.upload("application/x-ndjson", dataset).await;
    assert_eq!(s, 201, "{b}");
    let execution = app
        .start_execution(
            &b["data"]["dataset_id"],
            json!({"pii": "redact", "quality_threshold": 0.0, "shard_size": 3}),
        )
        .await;
    let done = app
        .wait_execution(&execution, Duration::from_secs(120))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    c.markers.push(execution.clone());
    (execution, ids)
}

// ---------------------------------------------------------------------------------------------
// Scanning
// ---------------------------------------------------------------------------------------------

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every place (file:line) where a canary that must not be there appears.
fn leaks<'a>(
    name: &str,
    text: &str,
    canaries: impl Iterator<Item = &'a Canary> + Clone,
) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for canary in canaries.clone() {
            if let Some(form) = canary.forms.iter().find(|f| line.contains(f.as_str())) {
                let shown: String = line.chars().take(300).collect();
                found.push(format!(
                    "{name}:{}: {} ({form}): {shown}",
                    n + 1,
                    canary.what
                ));
            }
        }
    }
    found
}

/// The whole database as text, one row per line.
fn database_dump(app: &App) -> String {
    let tables = app.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'");
    let mut dump = String::new();
    for table in tables.lines().filter(|t| !t.is_empty()) {
        dump.push_str(&app.sql(&format!("SELECT '{table}: ' || t::text FROM \"{table}\" t")));
        dump.push('\n');
    }
    dump
}

#[tokio::test(flavor = "multi_thread")]
async fn no_pii_or_secret_reaches_the_text_logs() {
    canary_scan(false).await;
}

/// Production logs JSON: the same scan, and every line must still be JSON after redaction.
#[tokio::test(flavor = "multi_thread")]
async fn no_pii_or_secret_reaches_the_json_logs() {
    canary_scan(true).await;
}

async fn canary_scan(production: bool) {
    let env = [
        ("RUST_LOG", "debug"),
        (
            "MCP_ENV",
            if production {
                "production"
            } else {
                "development"
            },
        ),
        // Agents go stale within a second or two, so the silent one is logged soon.
        ("MCP_AGENT_HEARTBEAT_MS", "500"),
    ];
    let mut app = App::start_with(Mode::Distributed, &env).await;
    app.start_stage_workers(1).await;
    let mut c = Canaries::new();

    let token = seed_auth(&app, &mut c).await;
    let agent = seed_agent(&app, &mut c, &token).await;
    seed_silent_agent(&app, &mut c, &token).await;
    seed_tasks(&app, &mut c, &token, &agent).await;
    seed_sealed_fields(&app, &mut c, &token).await;
    seed_websocket(&app, &mut c, &token, &agent).await;
    let (execution, record_ids) = seed_pipeline(&app, &mut c).await;
    agent.heartbeat.abort();
    let (s, b) = app
        .as_agent(
            "DELETE",
            &format!("/api/v1/agents/{}", agent.id),
            &agent.key,
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");

    // Exports are the product: PII in them is redacted.
    let mut problems = Vec::new();
    for format in ["jsonl", "chat_jsonl", "csv"] {
        let (s, text) = app.results(&execution, format).await;
        assert_eq!(s, 200, "{format}: {text}");
        problems.extend(leaks(&format!("export {format}"), &text, c.list.iter()));
        if format == "jsonl" {
            for id in &record_ids {
                assert!(
                    text.contains(id.as_str()),
                    "record {id} did not reach the export, so its PII was not checked:\n{text}"
                );
            }
        }
    }
    let (s, report) = app
        .admin("GET", &format!("/api/v1/pipeline/{execution}/report"), None)
        .await;
    assert_eq!(s, 200, "{report}");
    problems.extend(leaks("report", &report.to_string(), c.list.iter()));
    let reasons = &report["data"]["rejects"]["by_reason"];
    assert_eq!(reasons["ingestion.malformed_json"], 1, "{report}");
    assert_eq!(reasons["validation.unknown_role"], 1, "{report}");
    for kind in [
        "email",
        "phone",
        "ssn",
        "credit_card",
        "ipv4",
        "ipv6",
        "street_address",
        "date_of_birth",
    ] {
        assert!(
            report["data"]["pii"]["found_by_kind"][kind].as_u64() >= Some(1),
            "{kind} planted and found: {report}"
        );
    }

    // Sealed configuration, redacted metadata, key and password hashes: never in clear.
    let dump = database_dump(&app);
    assert!(
        dump.contains(&format!("canary-agent-{}", c.tag)),
        "the dump holds the agent row"
    );
    problems.extend(leaks(
        "database",
        &dump,
        c.list.iter().filter(|k| k.kept == Kept::Nowhere),
    ));

    // Stop every process, keeping the files they wrote, then read all of them.
    let dir = std::mem::replace(&mut app.dir, TempDir::new("canary-scratch"));
    drop(app);
    let files = files_under(dir.path());
    let mut logged = String::new();
    for path in &files {
        let name = path.strip_prefix(dir.path()).unwrap().display().to_string();
        let bytes = std::fs::read(path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        if name.ends_with(".log") {
            problems.extend(leaks(&name, &text, c.list.iter()));
            logged.push_str(&text);
        } else {
            // Artifacts: the dataset and the stages before validation hold its PII by design.
            problems.extend(leaks(
                &name,
                &text,
                c.list.iter().filter(|k| k.kept != Kept::Dataset),
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} canaries found where they must not be:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // The scan read real logs: debug output from every process, naming what was done.
    for marker in &c.markers {
        assert!(
            logged.contains(marker.as_str()),
            "{marker} is not in the logs, so the scan proves nothing"
        );
    }
    for (message, redacted) in &c.redacted_markers {
        assert!(
            logged
                .lines()
                .any(|l| l.contains(message.as_str()) && l.contains(redacted.as_str())),
            "no {message:?} line with {redacted:?} in the logs"
        );
    }
    assert!(
        logged.lines().filter(|l| l.contains("DEBUG")).count() > 10,
        "RUST_LOG=debug took effect"
    );
    if production {
        for line in logged.lines().filter(|l| l.starts_with('{')) {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "not JSON: {line}"
            );
        }
        assert!(
            logged.lines().filter(|l| l.starts_with('{')).count() > 10,
            "production logs are JSON"
        );
    }
    eprintln!(
        "scanned {} files ({} log bytes) for {} canaries",
        files.len(),
        logged.len(),
        c.list.len()
    );
}
