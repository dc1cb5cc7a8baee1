//! The permission matrix of the API contract, on every operation and channel.
//!
//! The expected rule of each operation is written here from the contract (roles, permission
//! names and the per-endpoint notes such as "(admin)" or "(assigned agent)"), apart from the
//! server's own table, and the test walks every operation of the committed
//! `openapi/openapi.json`: an operation without a row fails, so no route skips the matrix.
//! For each caller (none, `admin`, `operator`, `viewer`, `agent`) it checks: no credentials →
//! 401, a role without the permission → 403, a role with it → neither (404 for an unknown id
//! still counts as allowed: authorization came first).
//!
//! The role check runs after the body is parsed (a bad body as a viewer is a 422, not a 403),
//! while missing credentials are refused first; so every request here carries a valid body.

use std::{sync::atomic::AtomicU64, time::Duration};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::{connect_async, tungstenite::Message};
use uuid::Uuid;

use crate::helpers::{App, Mode, app::ADMIN_PASSWORD};

/// The permission names of the contract.
const PERMISSIONS: &[&str] = &[
    "agent.register",
    "agent.discover",
    "task.create",
    "task.assign",
    "pipeline.execute",
    "agent.basic",
    "task.read",
    "task.report",
    "pipeline.read",
    "system.read",
    "audit.read",
    "user.manage",
    "schedule.read",
    "schedule.manage",
];

const USER_ROLES: [&str; 3] = ["admin", "operator", "viewer"];

/// The contract's roles: `admin` everything, `operator` all but user and key management and
/// audit, `viewer` read only, `agent` its own record and the tasks routed to it.
fn role_has(role: &str, permission: &str) -> bool {
    assert!(
        PERMISSIONS.contains(&permission),
        "{permission} is not a permission name of the contract"
    );
    match role {
        "admin" => true,
        "operator" => !matches!(permission, "user.manage" | "audit.read"),
        "viewer" => matches!(
            permission,
            "agent.discover"
                | "agent.basic"
                | "task.read"
                | "pipeline.read"
                | "system.read"
                | "schedule.read"
        ),
        "agent" => matches!(permission, "agent.basic" | "task.read" | "task.report"),
        other => panic!("unknown role {other}"),
    }
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// No credentials needed.
    Open,
    /// Any authenticated caller, agents included.
    Authenticated,
    /// Users and agents by the permission.
    Perm(&'static str),
    /// Users by the permission; an agent only on its own record, whatever the permission.
    OwnAgent(&'static str),
    /// Only the agent itself, on its own record ("(the agent)"); never a user.
    TheAgent,
    /// Users by the permission; an agent only on a task routed to it.
    OwnTask(&'static str),
    /// Only the agent the task is routed to ("(assigned agent)"); never a user.
    AssignedAgent,
}

use Rule::*;

/// Method, path as in openapi.json, rule. Rows for operations not (yet) in the spec are unused.
const MATRIX: &[(&str, &str, Rule)] = &[
    ("GET", "/api/v1/health", Open),
    ("GET", "/api/v1/ready", Open),
    ("POST", "/api/v1/auth/login", Open),
    ("POST", "/api/v1/auth/refresh", Open),
    ("POST", "/api/v1/auth/logout", Authenticated),
    ("POST", "/api/v1/users", Perm("user.manage")),
    ("PATCH", "/api/v1/users/{id}", Perm("user.manage")),
    // Tasks
    ("POST", "/api/v1/tasks", Perm("task.create")),
    ("GET", "/api/v1/tasks", Perm("task.read")),
    ("GET", "/api/v1/tasks/{id}", OwnTask("task.read")),
    ("GET", "/api/v1/tasks/{id}/status", OwnTask("task.read")),
    ("POST", "/api/v1/tasks/batch", Perm("task.create")),
    ("POST", "/api/v1/tasks/{id}/cancel", Perm("task.create")),
    ("POST", "/api/v1/tasks/{id}/retry", Perm("task.create")),
    ("POST", "/api/v1/tasks/{id}/assign", Perm("task.assign")),
    ("POST", "/api/v1/tasks/{id}/progress", AssignedAgent),
    ("GET", "/api/v1/tasks/{id}/shard/input", AssignedAgent),
    ("PUT", "/api/v1/tasks/{id}/shard/output", AssignedAgent),
    ("POST", "/api/v1/tasks/{id}/complete", AssignedAgent),
    ("POST", "/api/v1/tasks/{id}/fail", AssignedAgent),
    ("GET", "/api/v1/queues", Perm("system.read")),
    ("POST", "/api/v1/queues/{name}/pause", Perm("task.assign")),
    ("POST", "/api/v1/queues/{name}/resume", Perm("task.assign")),
    // Agents
    ("POST", "/api/v1/agents/register", Perm("agent.register")),
    ("GET", "/api/v1/agents/discover", Perm("agent.discover")),
    ("GET", "/api/v1/agents/{id}", OwnAgent("agent.basic")),
    ("DELETE", "/api/v1/agents/{id}", OwnAgent("agent.register")),
    ("GET", "/api/v1/agents/{id}/health", OwnAgent("agent.basic")),
    ("POST", "/api/v1/agents/{id}/heartbeat", TheAgent),
    (
        "POST",
        "/api/v1/agents/{id}/capabilities",
        OwnAgent("agent.register"),
    ),
    (
        "POST",
        "/api/v1/agents/{id}/validate",
        OwnAgent("agent.basic"),
    ),
    (
        "GET",
        "/api/v1/agents/{id}/metrics",
        OwnAgent("agent.basic"),
    ),
    ("POST", "/api/v1/agents/{id}/allocate", Perm("task.assign")),
    ("POST", "/api/v1/agents/{id}/tasks/claim", TheAgent),
    ("GET", "/api/v1/capabilities", Perm("agent.discover")),
    ("POST", "/api/v1/capabilities", Perm("agent.register")),
    // Pipeline
    ("POST", "/api/v1/datasets", Perm("pipeline.execute")),
    (
        "POST",
        "/api/v1/pipeline/agent-execute",
        Perm("pipeline.execute"),
    ),
    ("POST", "/api/v1/pipeline/batch", Perm("pipeline.execute")),
    (
        "GET",
        "/api/v1/pipeline/{execution_id}",
        Perm("pipeline.read"),
    ),
    (
        "GET",
        "/api/v1/pipeline/{execution_id}/agent-progress",
        Perm("pipeline.read"),
    ),
    (
        "GET",
        "/api/v1/pipeline/{execution_id}/results",
        Perm("pipeline.read"),
    ),
    (
        "GET",
        "/api/v1/pipeline/{execution_id}/report",
        Perm("pipeline.read"),
    ),
    (
        "POST",
        "/api/v1/pipeline/{execution_id}/cancel",
        Perm("pipeline.execute"),
    ),
    // Schedules
    ("POST", "/api/v1/schedules", Perm("schedule.manage")),
    ("GET", "/api/v1/schedules", Perm("schedule.read")),
    ("GET", "/api/v1/schedules/{id}", Perm("schedule.read")),
    ("PATCH", "/api/v1/schedules/{id}", Perm("schedule.manage")),
    ("DELETE", "/api/v1/schedules/{id}", Perm("schedule.manage")),
    ("GET", "/api/v1/schedules/{id}/runs", Perm("schedule.read")),
    // System
    ("GET", "/api/v1/events", Perm("task.read")),
    ("GET", "/api/v1/system/health", Perm("system.read")),
    ("GET", "/api/v1/audit", Perm("audit.read")),
    ("GET", "/api/v1/audit/verify", Perm("audit.read")),
    // Outside `/api/v1` and the spec, so the walk never reaches them; kept with the contract's
    // reading (only the listed paths are open; the dashboard page itself holds no data).
    ("GET", "/metrics", Perm("system.read")),
    ("GET", "/dashboard", Open),
    // The MCP endpoint: any authenticated caller; each tool then needs its permission
    // (`MCP_TOOLS`), checked by `mcp_matrix`.
    ("POST", "/mcp", Authenticated),
];

/// The MCP tools and the permission each needs: that of the REST operation it mirrors.
const MCP_TOOLS: &[(&str, &str)] = &[
    ("submit_task", "task.create"),
    ("submit_batch", "task.create"),
    ("get_task", "task.read"),
    ("list_tasks", "task.read"),
    ("cancel_task", "task.create"),
    ("retry_task", "task.create"),
    ("run_pipeline", "pipeline.execute"),
    ("get_execution", "pipeline.read"),
    ("get_execution_report", "pipeline.read"),
    ("list_queues", "system.read"),
    ("pause_queue", "task.assign"),
    ("resume_queue", "task.assign"),
    ("discover_agents", "agent.discover"),
    ("get_agent_health", "agent.basic"),
    ("system_health", "system.read"),
];

/// Operations that revoke the credentials they are called with.
const ENDS_SESSION: &[(&str, &str)] = &[("POST", "/api/v1/auth/logout")];

/// What a call must answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Unauthenticated,
    Forbidden,
    Allowed,
}

/// One caller: a role label and its `Authorization` header.
struct Caller {
    label: String,
    authorization: Option<String>,
}

struct Agent {
    id: String,
    key: String,
}

struct Fixture {
    app: App,
    /// Role, username, password and a current access token.
    users: Vec<(&'static str, String, String, String)>,
    /// The agent whose own record and routed task are used in the "allowed" cases.
    me: Agent,
    /// Another agent: acting on `me`'s record or task must be refused.
    other: Agent,
    /// An agent that deregisters itself (its key stops working).
    disposable: Agent,
    /// A task routed to `me` and running.
    my_task: String,
    queue: &'static str,
    unique: AtomicU64,
}

impl Fixture {
    async fn start() -> Self {
        let app = App::start(Mode::SingleNode).await;
        let mut users = vec![(
            "admin",
            "admin".to_string(),
            ADMIN_PASSWORD.to_string(),
            app.admin_token.clone(),
        )];
        for role in ["operator", "viewer"] {
            let username = format!("rbac-{role}");
            let password = format!("{role}-password-0123456789");
            let (s, b) = app
                .admin(
                    "POST",
                    "/api/v1/users",
                    Some(json!({"username": username, "password": password, "role": role})),
                )
                .await;
            assert_eq!(s, 201, "{b}");
            let token = app.login(&username, &password).await;
            users.push((role, username, password, token));
        }
        // `sentiment` is the test's own capability, served by no built-in worker, so the task
        // below waits for `me`.
        app.define_capability("sentiment").await;
        app.define_capability("tone").await;
        let me = register(&app, "rbac-me", "sentiment").await;
        let other = register(&app, "rbac-other", "tone").await;
        let disposable = register(&app, "rbac-disposable", "tone").await;
        let task = app
            .create_task(json!({"type": "analysis", "required_capabilities": ["sentiment"], "payload": {"rbac": true}}))
            .await;
        let my_task = task["id"].as_str().unwrap().to_string();
        let (s, b) = app.claim(&me.id, &me.key, 10000).await;
        assert_eq!(s, 200, "the agent claims its task: {b}");
        assert_eq!(b["data"]["id"], my_task.as_str(), "{b}");
        Self {
            app,
            users,
            me,
            other,
            disposable,
            my_task,
            queue: "bias_detection",
            unique: AtomicU64::new(0),
        }
    }

    fn next(&self) -> u64 {
        self.unique
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn user(&self, role: &str) -> Caller {
        let (_, _, _, token) = self.users.iter().find(|u| u.0 == role).unwrap();
        Caller {
            label: role.to_string(),
            authorization: Some(format!("Bearer {token}")),
        }
    }

    /// The user's caller for an operation: a throwaway session for one that ends the caller's
    /// own session (logging out revokes the access token it was called with).
    async fn user_for(&self, role: &str, method: &str, path: &str) -> Caller {
        if !ENDS_SESSION.contains(&(method, path)) {
            return self.user(role);
        }
        let (_, username, password, _) = self.users.iter().find(|u| u.0 == role).unwrap();
        let token = self.app.login(username, password).await;
        Caller {
            label: format!("{role} (own session)"),
            authorization: Some(format!("Bearer {token}")),
        }
    }

    fn agent(&self, who: &Agent, label: &str) -> Caller {
        Caller {
            label: label.to_string(),
            authorization: Some(format!("Agent {}", who.key)),
        }
    }

    /// A minimal valid request for the operation (query string, body).
    async fn request_parts(&self, method: &str, path: &str) -> (String, Option<Body>) {
        let n = self.next();
        let body = match (method, path) {
            ("POST", "/api/v1/auth/login") => Some(Body::Json(
                json!({"username": "admin", "password": ADMIN_PASSWORD}),
            )),
            ("POST", "/api/v1/auth/refresh") => {
                let (s, b) = self.app.try_login("admin", ADMIN_PASSWORD).await;
                assert_eq!(s, 200, "{b}");
                Some(Body::Json(
                    json!({"refresh_token": b["data"]["refresh_token"]}),
                ))
            }
            ("POST", "/api/v1/auth/logout") => Some(Body::Json(json!({}))),
            ("POST", "/api/v1/users") => Some(Body::Json(json!({
                "username": format!("rbac-made-{n}"),
                "password": "made-password-0123456789",
                "role": "viewer",
            }))),
            ("PATCH", "/api/v1/users/{id}") => Some(Body::Json(json!({"disabled": false}))),
            ("POST", "/api/v1/tasks") => {
                Some(Body::Json(json!({"type": "generic", "payload": {"n": n}})))
            }
            ("POST", "/api/v1/tasks/batch") => Some(Body::Json(
                json!({"tasks": [{"type": "generic", "payload": {"n": n}}]}),
            )),
            ("POST", "/api/v1/tasks/{id}/assign") => Some(Body::Json(json!({"criteria": {}}))),
            ("POST", "/api/v1/tasks/{id}/progress") => {
                Some(Body::Json(json!({"progress": 10, "message": "working"})))
            }
            ("POST", "/api/v1/tasks/{id}/complete") => {
                Some(Body::Json(json!({"result": {"ok": true}})))
            }
            ("PUT", "/api/v1/tasks/{id}/shard/output") => Some(Body::Raw(
                "application/x-ndjson",
                json!({"id": "r1", "source": "rbac", "messages": [
                    {"role": "user", "content": "hello"},
                ], "metadata": {}})
                .to_string()
                    + "\n",
            )),
            ("POST", "/api/v1/tasks/{id}/fail") => {
                Some(Body::Json(json!({"error": "gave up", "retryable": false})))
            }
            ("POST", "/api/v1/agents/register") => Some(Body::Json(json!({
                "name": format!("rbac-made-{n}"),
                "type": "validation",
                "capabilities": ["validation"],
            }))),
            ("POST", "/api/v1/agents/{id}/heartbeat") => Some(Body::Json(json!({}))),
            // A capability the agent `me` already holds: an agent may not widen its own reach.
            ("POST", "/api/v1/agents/{id}/capabilities") => Some(Body::Json(
                json!({"capabilities": ["sentiment"], "mode": "add"}),
            )),
            ("POST", "/api/v1/agents/{id}/allocate") => Some(Body::Json(json!({"slots": 1}))),
            ("POST", "/api/v1/capabilities") => {
                Some(Body::Json(json!({"name": format!("rbac_made_{n}")})))
            }
            ("POST", "/api/v1/datasets") => Some(Body::Raw(
                "application/x-ndjson",
                json!({"messages": [
                    {"role": "user", "content": "How do I reset my password?"},
                    {"role": "assistant", "content": "Open settings and choose reset."},
                ]})
                .to_string()
                    + "\n",
            )),
            // An unknown dataset: refused after authorization, so no pipeline runs.
            ("POST", "/api/v1/pipeline/agent-execute") => {
                Some(Body::Json(json!({"dataset_id": Uuid::now_v7()})))
            }
            ("POST", "/api/v1/pipeline/batch") => Some(Body::Json(
                json!({"executions": [{"dataset_id": Uuid::now_v7()}]}),
            )),
            // Hourly, so it never fires during the test.
            ("POST", "/api/v1/schedules") => Some(Body::Json(json!({
                "name": format!("rbac-{n}"),
                "interval_seconds": 3600,
                "task": {"type": "generic", "payload": {"n": n}},
            }))),
            ("PATCH", "/api/v1/schedules/{id}") => Some(Body::Json(json!({"paused": true}))),
            (m, p) if m != "GET" && m != "DELETE" && self.spec_has_body(m, p) => {
                panic!("no request body written for {m} {p}: add one to request_parts")
            }
            _ => None,
        };
        let query = match (method, path) {
            ("GET", "/api/v1/agents/discover") => "?capability=analysis",
            ("POST", "/api/v1/datasets") => "?name=rbac",
            _ => "",
        };
        (query.to_string(), body)
    }

    fn spec_has_body(&self, method: &str, path: &str) -> bool {
        spec()["paths"][path][method.to_lowercase()]
            .get("requestBody")
            .is_some()
    }

    async fn call(
        &self,
        caller: &Caller,
        method: &str,
        template: &str,
        target: &str,
    ) -> (u16, String) {
        let path = template
            .replace("{name}", self.queue)
            .replace("{id}", target)
            .replace("{execution_id}", target);
        let (query, body) = self.request_parts(method, template).await;
        let mut req = self
            .app
            .http
            .request(
                method.parse().unwrap(),
                format!("{}{path}{query}", self.app.base),
            )
            .timeout(Duration::from_secs(30));
        if let Some(a) = &caller.authorization {
            req = req.header("authorization", a);
        }
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Raw(content_type, text)) => {
                req.header("content-type", content_type).body(text)
            }
            None => req,
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let streaming = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        // An event stream never ends: its status is all that is needed.
        let text = if streaming {
            String::from("<event stream>")
        } else {
            resp.text().await.unwrap_or_default()
        };
        (status, text)
    }
}

enum Body {
    Json(Value),
    Raw(&'static str, String),
}

async fn register(app: &App, name: &str, capability: &str) -> Agent {
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/agents/register",
            Some(json!({"name": name, "type": "external_api", "capabilities": [capability]})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    Agent {
        id: b["data"]["agent"]["id"].as_str().unwrap().to_string(),
        key: b["data"]["agent_key"].as_str().unwrap().to_string(),
    }
}

fn spec() -> &'static Value {
    static SPEC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    })
}

/// Every operation of the committed spec: (method, path), in the matrix's order (so an agent
/// reports progress on its task before completing it), operations without a row last.
fn operations() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in spec()["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "patch" | "head" | "options" | "trace"
            ) {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out.sort_by_key(|(m, p)| {
        MATRIX
            .iter()
            .position(|(rm, rp, _)| rm == m && rp == p)
            .unwrap_or(MATRIX.len())
    });
    out
}

fn verdict(expect: Expect, status: u16) -> bool {
    match expect {
        Expect::Unauthenticated => status == 401,
        Expect::Forbidden => status == 403,
        Expect::Allowed => status != 401 && status != 403 && status < 500,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_and_channel_enforces_the_permission_table() {
    let fx = Fixture::start().await;
    let mut failures = operations_matrix(&fx).await;
    failures.extend(channels_matrix(&fx).await);
    failures.extend(mcp_matrix(&fx).await);
    assert!(
        failures.is_empty(),
        "{} of the checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every operation of the spec, for every caller.
async fn operations_matrix(fx: &Fixture) -> Vec<String> {
    let ops = operations();
    assert!(
        ops.len() >= 40,
        "openapi.json lists only {} operations",
        ops.len()
    );
    let mut failures: Vec<String> = Vec::new();
    let mut checked = 0;
    for (method, path) in &ops {
        let Some(&(_, _, rule)) = MATRIX.iter().find(|(m, p, _)| m == method && p == path) else {
            failures.push(format!(
                "{method} {path} is in openapi.json but has no row in the permission matrix"
            ));
            continue;
        };
        let secured = spec()["paths"][path][method.to_lowercase()]
            .get("security")
            .is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty()));
        if secured == matches!(rule, Open) {
            failures.push(format!(
                "{method} {path}: openapi.json says secured={secured}, the contract says {rule:?}"
            ));
        }
        let fresh = Uuid::now_v7().to_string();
        // (caller, target id, expected)
        let mut cases: Vec<(Caller, String, Expect)> = Vec::new();
        cases.push((
            Caller {
                label: "no credentials".into(),
                authorization: None,
            },
            fresh.clone(),
            if matches!(rule, Open) {
                Expect::Allowed
            } else {
                Expect::Unauthenticated
            },
        ));
        // Credentials that do not verify count as none.
        cases.push((
            Caller {
                label: "a forged token".into(),
                authorization: Some("Bearer not-a-token".into()),
            },
            fresh.clone(),
            if matches!(rule, Open) {
                Expect::Allowed
            } else {
                Expect::Unauthenticated
            },
        ));
        if !matches!(rule, Open) {
            for role in USER_ROLES {
                let (target, allowed) = match rule {
                    Open | Authenticated => (fresh.clone(), true),
                    Perm(p) | OwnAgent(p) => (fresh.clone(), role_has(role, p)),
                    OwnTask(p) => (fx.my_task.clone(), role_has(role, p)),
                    // A real record, so the refusal is about who asks, not what exists.
                    TheAgent => (fx.me.id.clone(), false),
                    AssignedAgent => (fx.my_task.clone(), false),
                };
                cases.push((
                    fx.user_for(role, method, path).await,
                    target,
                    allowed_or_forbidden(allowed),
                ));
            }
            match rule {
                Open => {}
                Authenticated => {
                    cases.push((fx.agent(&fx.me, "agent"), fresh.clone(), Expect::Allowed))
                }
                Perm(p) => cases.push((
                    fx.agent(&fx.me, "agent"),
                    fresh.clone(),
                    allowed_or_forbidden(role_has("agent", p)),
                )),
                OwnAgent(_) | TheAgent => {
                    // Deregistering ends the agent's key: a disposable agent does it.
                    let own = if method == "DELETE" {
                        &fx.disposable
                    } else {
                        &fx.me
                    };
                    cases.push((
                        fx.agent(&fx.other, "agent on another agent's record"),
                        fx.me.id.clone(),
                        Expect::Forbidden,
                    ));
                    cases.push((
                        fx.agent(own, "agent on its own record"),
                        own.id.clone(),
                        Expect::Allowed,
                    ));
                }
                OwnTask(_) | AssignedAgent => {
                    cases.push((
                        fx.agent(&fx.other, "agent on a task routed to another agent"),
                        fx.my_task.clone(),
                        Expect::Forbidden,
                    ));
                    cases.push((
                        fx.agent(&fx.me, "agent on the task routed to it"),
                        fx.my_task.clone(),
                        Expect::Allowed,
                    ));
                }
            }
        }
        for (caller, target, expect) in cases {
            let (status, body) = fx.call(&caller, method, path, &target).await;
            checked += 1;
            if !verdict(expect, status) {
                failures.push(format!(
                    "{method} {path} as {}: expected {expect:?}, got {status}: {}",
                    caller.label,
                    body.chars().take(300).collect::<String>()
                ));
            }
        }
    }
    eprintln!(
        "permission matrix: {checked} calls over {} operations",
        ops.len()
    );
    failures
}

fn allowed_or_forbidden(allowed: bool) -> Expect {
    if allowed {
        Expect::Allowed
    } else {
        Expect::Forbidden
    }
}

/// The WebSocket channels and what each needs, from the contract: agent status is part of the
/// agent's own record, task channels are task reads (an agent sees only its own tasks'
/// events), pipeline updates are pipeline reads and the system channel is a system read.
async fn channels_matrix(fx: &Fixture) -> Vec<String> {
    let channels: &[(&str, Rule)] = &[
        ("/ws/agents/status", Perm("agent.basic")),
        ("/ws/tasks/progress", Perm("task.read")),
        ("/ws/pipeline/updates", Perm("pipeline.read")),
        ("/ws/system/events", Perm("system.read")),
        ("/ws/tasks/{id}", OwnTask("task.read")),
    ];
    let mut failures = Vec::new();
    for &(template, rule) in channels {
        let path = template.replace("{id}", &fx.my_task);
        let mut cases: Vec<(String, Option<String>, WsExpect)> = vec![
            ("no credentials".into(), None, WsExpect::Closed(&[4401])),
            (
                "a forged token".into(),
                Some("Bearer not-a-token".into()),
                WsExpect::Closed(&[4401]),
            ),
        ];
        let permission = match rule {
            Perm(p) | OwnTask(p) => p,
            other => panic!("no channel rule {other:?}"),
        };
        for role in USER_ROLES {
            cases.push((
                role.into(),
                fx.user(role).authorization,
                ws_expect(role_has(role, permission)),
            ));
        }
        cases.push((
            "agent".into(),
            fx.agent(&fx.me, "agent").authorization,
            ws_expect(role_has("agent", permission)),
        ));
        if matches!(rule, OwnTask(_)) {
            // A task routed elsewhere is refused like an unknown one, so ids cannot be probed.
            cases.push((
                "agent on a task routed to another agent".into(),
                fx.agent(&fx.other, "").authorization,
                WsExpect::Closed(&[4403, 4404]),
            ));
        }
        for (label, authorization, expect) in cases {
            let got = ws_outcome(&fx.app, &path, authorization.as_deref()).await;
            let ok = match (&expect, &got) {
                (WsExpect::Snapshot, WsOutcome::Snapshot) => true,
                (WsExpect::Closed(codes), WsOutcome::Closed(code)) => codes.contains(code),
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{path} as {label}: expected {expect:?}, got {got:?}"
                ));
            }
        }
    }

    // The same events over Server-Sent Events: task reads, and pipeline reads for an execution.
    let sse: &[(&str, &str)] = &[
        ("/api/v1/events", "task.read"),
        ("/api/v1/events?execution_id={x}", "pipeline.read"),
    ];
    for &(template, permission) in sse {
        let path = template.replace("{x}", &Uuid::now_v7().to_string());
        let (status, _) = sse_status(&fx.app, &path, None).await;
        if status != 401 {
            failures.push(format!(
                "{path} with no credentials: expected 401, got {status}"
            ));
        }
        let mut callers: Vec<(String, Option<String>, bool)> = USER_ROLES
            .iter()
            .map(|r| {
                (
                    r.to_string(),
                    fx.user(r).authorization,
                    role_has(r, permission),
                )
            })
            .collect();
        callers.push((
            "agent".into(),
            fx.agent(&fx.me, "agent").authorization,
            role_has("agent", permission),
        ));
        for (label, authorization, allowed) in callers {
            let (status, body) = sse_status(&fx.app, &path, authorization.as_deref()).await;
            let ok = if allowed {
                status != 401 && status != 403 && status < 500
            } else {
                status == 403
            };
            if !ok {
                failures.push(format!(
                    "{path} as {label}: expected {}, got {status}: {body}",
                    if allowed { "allowed" } else { "403" }
                ));
            }
        }
    }
    failures
}

#[derive(Debug)]
enum WsExpect {
    /// Accepted: the first message is the snapshot.
    Snapshot,
    /// Refused with one of these close codes, before any event.
    Closed(&'static [u16]),
}

fn ws_expect(allowed: bool) -> WsExpect {
    if allowed {
        WsExpect::Snapshot
    } else {
        WsExpect::Closed(&[4403])
    }
}

#[derive(Debug, PartialEq)]
enum WsOutcome {
    Snapshot,
    Closed(u16),
    /// Anything else: an HTTP refusal of the upgrade, another first message, no answer.
    Other(String),
}

async fn ws_outcome(app: &App, path: &str, authorization: Option<&str>) -> WsOutcome {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = app.ws_url(path).into_client_request().unwrap();
    if let Some(a) = authorization {
        request
            .headers_mut()
            .insert("authorization", a.parse().unwrap());
    }
    let ws = match connect_async(request).await {
        Ok((ws, _)) => ws,
        Err(e) => return WsOutcome::Other(format!("handshake: {e}")),
    };
    // The first message that says something: a text message or a close frame with a code.
    let mut answers = ws.filter(|m| {
        std::future::ready(!matches!(
            m,
            Ok(msg) if !matches!(msg, Message::Text(_) | Message::Close(Some(_)))
        ))
    });
    match tokio::time::timeout(Duration::from_secs(10), answers.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if v["type"] == "snapshot" {
                WsOutcome::Snapshot
            } else {
                WsOutcome::Other(text.to_string())
            }
        }
        Ok(Some(Ok(Message::Close(Some(frame))))) => WsOutcome::Closed(u16::from(frame.code)),
        other => WsOutcome::Other(format!("{other:?}")),
    }
}

async fn sse_status(app: &App, path: &str, authorization: Option<&str>) -> (u16, String) {
    let mut req = app
        .http
        .get(format!("{}{path}", app.base))
        .timeout(Duration::from_secs(30));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    if status == 200 {
        // The stream stays open: the status line is the answer.
        return (status, String::new());
    }
    (status, resp.text().await.unwrap_or_default())
}

/// `/mcp`: no credentials → 401; each role's `tools/list` is exactly the tools its permissions
/// allow, and calling any other tool answers the tool error `forbidden`.
async fn mcp_matrix(fx: &Fixture) -> Vec<String> {
    let mut failures = Vec::new();
    let status = fx
        .app
        .http
        .post(format!("{}/mcp", fx.app.base))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    if status != 401 {
        failures.push(format!("POST /mcp without credentials: {status}, want 401"));
    }
    let mut callers: Vec<(&str, Caller)> = USER_ROLES.iter().map(|r| (*r, fx.user(r))).collect();
    callers.push(("agent", fx.agent(&fx.me, "agent")));
    for (role, caller) in callers {
        let authorization = caller.authorization.unwrap();
        let mut want: Vec<&str> = MCP_TOOLS
            .iter()
            .filter(|(_, p)| role_has(role, p))
            .map(|(t, _)| *t)
            .collect();
        want.sort();
        let denied: Vec<&str> = MCP_TOOLS
            .iter()
            .filter(|(_, p)| !role_has(role, p))
            .map(|(t, _)| *t)
            .collect();
        let mut steps = vec![json!({"op": "tools"})];
        steps.extend(
            denied
                .iter()
                .map(|t| json!({"op": "call", "tool": t, "args": {}})),
        );
        let out = crate::helpers::mcp::session(&fx.app.base, &authorization, json!(steps)).await;
        let results = out["results"].as_array().unwrap();
        let mut listed: Vec<&str> = results[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        listed.sort();
        if listed != want {
            failures.push(format!(
                "MCP tools/list as {role}: {listed:?}, want {want:?}"
            ));
        }
        for (tool, result) in denied.iter().zip(&results[1..]) {
            if result["structured"]["error"]["code"] != "forbidden" {
                failures.push(format!("MCP {tool} as {role}: {result}, want forbidden"));
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_cannot_be_given_the_agent_role() {
    let app = App::start(Mode::SingleNode).await;
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"username": "fake-agent", "password": "fake-agent-password-1", "role": "agent"})),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["details"]["field"], "role", "{b}");
    let (s, _) = app.try_login("fake-agent", "fake-agent-password-1").await;
    assert_eq!(s, 401, "no such user was created");
}
