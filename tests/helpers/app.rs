//! The application under test: the real `mcp-api` (and `mcp-worker`) binaries, configured by
//! environment like in production, with the admin created by `mcp-api admin create`.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

use super::{
    servers::{Postgres, Redis, TempDir},
    wait_for,
};

/// The pipeline stages in order, with the worker binary that runs each.
pub const STAGES: &[(&str, &str)] = &[
    ("ingestion", "mcp-worker-ingestion"),
    ("standardization", "mcp-worker-standardization"),
    ("validation", "mcp-worker-validation"),
    ("processing", "mcp-worker-processing"),
    ("quality_assessment", "mcp-worker-quality"),
    ("export", "mcp-worker-export"),
];

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdefghijklmnop";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// SQLite, embedded queue and workers, in-process bus.
    SingleNode,
    /// PostgreSQL + Redis, workers in separate `mcp-worker` processes.
    Distributed,
}

/// Where the workspace's binaries are: `MCP_BIN_DIR` if set (a benchmark comparing another
/// build), else next to this test executable's `deps/` directory.
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("MCP_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().unwrap();
            exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf()
        }
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with ./scripts/test.sh (it builds the binaries first)",
        path.display()
    );
    path
}

pub struct App {
    /// `http://127.0.0.1:{port}` of the main API process.
    pub base: String,
    /// The port the main API process bound (it starts on port 0 and reports it).
    pub port: u16,
    pub http: reqwest::Client,
    pub admin_token: String,
    pub redis: Option<Redis>,
    /// Kept for the app's lifetime; dropping it stops the cluster.
    _postgres: Option<Postgres>,
    pub env: Vec<(String, String)>,
    api: Option<Child>,
    /// Further API processes (replicas) sharing the database, Redis and artifacts.
    replicas: Vec<Child>,
    workers: Vec<Child>,
    pub dir: TempDir,
}

/// The arguments of the worker a distributed app starts with: every task type but no pipeline
/// stage, so tests that run stages choose which processes serve them.
pub const TASK_WORKER: &[&str] = &["--capabilities", "all"];

impl App {
    pub async fn start(mode: Mode) -> Self {
        Self::start_with(mode, &[]).await
    }

    pub async fn start_with(mode: Mode, extra_env: &[(&str, &str)]) -> Self {
        Self::start_opts(mode, extra_env, false).await
    }

    /// As [`App::start_with`], with PostgreSQL writing durably (`fsync` on), as in production:
    /// for the benchmarks, whose figures must not come from a database that skips its syncs.
    #[allow(
        dead_code,
        reason = "used by the benchmarks, not by the black-box tests"
    )]
    pub async fn start_durable(mode: Mode, extra_env: &[(&str, &str)]) -> Self {
        Self::start_opts(mode, extra_env, true).await
    }

    async fn start_opts(mode: Mode, extra_env: &[(&str, &str)], durable: bool) -> Self {
        let dir = TempDir::new("app");
        let (redis, postgres) = match mode {
            Mode::SingleNode => (None, None),
            Mode::Distributed => (Some(Redis::start()), Some(Postgres::start(durable))),
        };
        let mut env: Vec<(String, String)> = vec![
            ("MCP_HOST".into(), "127.0.0.1".into()),
            // Every API process binds a free port and reports it (see `wait_serving`).
            ("MCP_PORT".into(), "0".into()),
            (
                "MCP_SECRET_KEY".into(),
                "test-secret-key-0123456789abcdefghijklmnop".into(),
            ),
            ("JWT_SECRET_KEY".into(), JWT_SECRET.into()),
            (
                "MCP_ARTIFACT_STORE".into(),
                dir.path().join("artifacts").display().to_string(),
            ),
            ("RUST_LOG".into(), "info".into()),
        ];
        match mode {
            Mode::SingleNode => env.push((
                "DATABASE_URL".into(),
                format!("sqlite://{}?mode=rwc", dir.path().join("mcp.db").display()),
            )),
            Mode::Distributed => {
                env.push((
                    "DATABASE_URL".into(),
                    postgres.as_ref().unwrap().create_database(),
                ));
                env.push(("REDIS_URL".into(), redis.as_ref().unwrap().url()));
                env.push(("MCP_EMBEDDED_WORKERS".into(), "false".into()));
            }
        }
        for (k, v) in extra_env {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        let mut app = Self {
            base: String::new(),
            port: 0,
            http: reqwest::Client::new(),
            admin_token: String::new(),
            redis,
            _postgres: postgres,
            env,
            api: None,
            replicas: Vec::new(),
            workers: Vec::new(),
            dir,
        };
        app.create_user_cli(ADMIN, ADMIN_PASSWORD, "admin");
        app.start_api();
        app.wait_healthy().await;
        if mode == Mode::Distributed {
            app.start_worker(TASK_WORKER);
        }
        app.admin_token = app.login(ADMIN, ADMIN_PASSWORD).await;
        app
    }

    fn command(&self, bin: &str) -> Command {
        let mut cmd = Command::new(binary(bin));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path());
        cmd
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(name))
            .unwrap()
    }

    /// `mcp-api admin create --username U --password-stdin --role R`.
    pub fn create_user_cli(&self, username: &str, password: &str, role: &str) {
        let mut child = self
            .command("mcp-api")
            .args([
                "admin",
                "create",
                "--username",
                username,
                "--password-stdin",
                "--role",
                role,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "admin create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the main API process; [`App::wait_healthy`] waits until it serves. Started again
    /// (after [`App::kill_api`]), it binds the port it had, so clients reconnect to the same
    /// address.
    pub fn start_api(&mut self) {
        let port_file = self.dir.path().join("api.port");
        let _ = std::fs::remove_file(&port_file);
        let mut cmd = self.command("mcp-api");
        if self.port != 0 {
            cmd.env("MCP_PORT", self.port.to_string());
        }
        let child = cmd
            .env("MCP_PORT_FILE", &port_file)
            .stdout(self.log("api.log"))
            .stderr(self.log("api.log"))
            .spawn()
            .unwrap();
        self.api = Some(child);
    }

    /// SIGKILLs the main API process; [`App::start_api`] and [`App::wait_healthy`] bring it back.
    pub fn kill_api(&mut self) {
        if let Some(mut c) = self.api.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the main API process, applies `env`, and starts it again (same port and data).
    pub async fn restart_api_with(&mut self, env: &[(&str, &str)]) {
        self.kill_api();
        self.set_env(env);
        self.start_api();
        self.wait_healthy().await;
    }

    /// Changes the environment of processes started from now on.
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        for (k, v) in env {
            self.env.retain(|(key, _)| key != k);
            self.env.push((k.to_string(), v.to_string()));
        }
    }

    /// Runs `mcp-api` with `args` to completion; returns its exit success and output.
    pub fn run_api_command(&self, args: &[&str]) -> (bool, String) {
        let out = self.command("mcp-api").args(args).output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Starts another API process on its own port (distributed mode: same database and Redis)
    /// and waits until it answers; returns its port.
    pub async fn start_replica(&mut self) -> u16 {
        let port_file = self
            .dir
            .path()
            .join(format!("api-replica-{}.port", self.replicas.len()));
        let child = self
            .command("mcp-api")
            .env("MCP_PORT_FILE", &port_file)
            .stdout(self.log("api-replica.log"))
            .stderr(self.log("api-replica.log"))
            .spawn()
            .unwrap();
        // Held before waiting, so it is stopped with the app whatever happens.
        self.replicas.push(child);
        let log = self.dir.path().join("api-replica.log");
        let child = self.replicas.last_mut().unwrap();
        wait_serving(&self.http, child, &port_file, &log).await
    }

    /// PostgreSQL's postmaster pid (distributed mode).
    #[allow(dead_code, reason = "used by the benchmarks' cost figures")]
    pub fn postgres_pid(&self) -> Option<u32> {
        self._postgres.as_ref()?.postmaster_pid()
    }

    /// The main API process's pid (the benchmarks read its memory use).
    #[allow(dead_code)]
    pub fn api_pid(&self) -> u32 {
        self.api.as_ref().unwrap().id()
    }

    /// Restarts worker processes that exited; returns how many.
    pub fn revive_workers(&mut self) -> usize {
        let mut dead = 0;
        for c in &mut self.workers {
            if c.try_wait().ok().flatten().is_some() {
                dead += 1;
            }
        }
        self.workers
            .retain_mut(|c| c.try_wait().ok().flatten().is_none());
        for _ in 0..dead {
            self.start_worker(TASK_WORKER);
        }
        dead
    }

    /// Number of worker processes started and not killed.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    pub fn start_worker(&mut self, args: &[&str]) {
        self.start_worker_binary("mcp-worker", args);
    }

    /// Starts a worker from one of the worker binaries (`mcp-worker-ingestion`, …).
    pub fn start_worker_binary(&mut self, bin: &str, args: &[&str]) {
        let child = self
            .command(bin)
            .args(args)
            .stdout(self.log("worker.log"))
            .stderr(self.log("worker.log"))
            .spawn()
            .unwrap();
        self.workers.push(child);
    }

    /// Starts `per_stage` worker processes of every stage binary and waits until each stage has
    /// that many registered workers, so work submitted next is served by them.
    pub async fn start_stage_workers(&mut self, per_stage: usize) {
        for _ in 0..per_stage {
            for (_, bin) in STAGES {
                self.start_worker_binary(bin, &[]);
            }
        }
        wait_for(
            "stage workers to register",
            Duration::from_secs(30),
            || async {
                let mut missing = Vec::new();
                for (stage, _) in STAGES {
                    let (_, found) = self
                        .admin(
                            "GET",
                            &format!("/api/v1/agents/discover?capability=stage_{stage}"),
                            None,
                        )
                        .await;
                    if found["count"].as_u64().unwrap_or(0) < per_stage as u64 {
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
    }

    /// Starts an execution over an uploaded dataset; returns its id.
    pub async fn start_execution(&self, dataset_id: &Value, options: Value) -> String {
        let (status, body) = self
            .admin(
                "POST",
                "/api/v1/pipeline/agent-execute",
                Some(json!({"dataset_id": dataset_id, "options": options, "priority": "medium"})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        body["data"]["execution_id"].as_str().unwrap().to_string()
    }

    /// Runs SQL statements against the app's SQLite database file (single-node mode), from
    /// outside the server, as anyone with access to the file could.
    #[allow(dead_code)]
    pub async fn sqlite(&self, statements: &str) {
        use sea_orm::ConnectionTrait;
        let url = &self
            .env
            .iter()
            .find(|(k, _)| k == "DATABASE_URL")
            .unwrap()
            .1;
        assert!(
            url.starts_with("sqlite:"),
            "SQLite access is for the single-node mode"
        );
        let conn = sea_orm::Database::connect(url.as_str()).await.unwrap();
        conn.execute_unprepared(statements).await.unwrap();
        conn.close().await.unwrap();
    }

    /// Runs SQL against the app's PostgreSQL database (distributed mode only).
    pub fn sql(&self, query: &str) -> String {
        let url = &self
            .env
            .iter()
            .find(|(k, _)| k == "DATABASE_URL")
            .unwrap()
            .1;
        self._postgres
            .as_ref()
            .expect("SQL access is for the distributed mode")
            .query(url, query)
    }

    /// SIGKILLs the longest-running worker process (so kills followed by starts rotate through
    /// all of them).
    #[allow(dead_code, reason = "used by the soak test and benchmark only")]
    pub fn kill_oldest_worker(&mut self) {
        if !self.workers.is_empty() {
            let mut c = self.workers.remove(0);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILLs the longest-running API replica (not the main API process).
    #[allow(dead_code, reason = "used by the soak test and benchmark only")]
    pub fn kill_oldest_replica(&mut self) {
        if !self.replicas.is_empty() {
            let mut c = self.replicas.remove(0);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILLs the most recently started worker process.
    pub fn kill_worker(&mut self) {
        if let Some(mut c) = self.workers.pop() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until the main API process serves; learns its port the first time.
    pub async fn wait_healthy(&mut self) {
        let port_file = self.dir.path().join("api.port");
        let log = self.dir.path().join("api.log");
        let api = self.api.as_mut().expect("the API was started");
        self.port = wait_serving(&self.http, api, &port_file, &log).await;
        self.base = format!("http://127.0.0.1:{}", self.port);
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self.try_login(username, password).await;
        assert_eq!(status, 200, "login failed: {body}");
        body["data"]["access_token"].as_str().unwrap().to_string()
    }

    /// Registers an agent as the admin; returns its id and key.
    pub async fn register_agent(&self, body: Value) -> (String, String) {
        let (status, b) = self
            .admin("POST", "/api/v1/agents/register", Some(body))
            .await;
        assert_eq!(status, 201, "agent not registered: {b}");
        (
            b["data"]["agent"]["id"].as_str().unwrap().to_string(),
            b["data"]["agent_key"].as_str().unwrap().to_string(),
        )
    }

    /// Adds an operator-defined capability (for tests whose agents must not race the built-in
    /// workers, which serve every task type's own capability); a name already defined is fine.
    pub async fn define_capability(&self, name: &str) {
        let (status, b) = self
            .admin(
                "POST",
                "/api/v1/capabilities",
                Some(json!({ "name": name })),
            )
            .await;
        assert!(
            status == 201 || status == 409,
            "capability {name} not defined: {b}"
        );
    }

    /// The agent's long-poll claim, waiting up to `wait_ms`; whatever the answer.
    pub async fn claim(&self, agent_id: &str, key: &str, wait_ms: u64) -> (u16, Value) {
        let path = format!("/api/v1/agents/{agent_id}/tasks/claim?wait_ms={wait_ms}");
        self.as_agent("POST", &path, key, None).await
    }

    /// `POST /auth/login`, whatever the answer.
    pub async fn try_login(
        &self,
        username: &(impl serde::Serialize + ?Sized),
        password: &(impl serde::Serialize + ?Sized),
    ) -> (u16, Value) {
        let body = json!({"username": username, "password": password});
        self.call("POST", "/api/v1/auth/login", None, Some(body))
            .await
    }

    /// `POST /auth/refresh`, whatever the answer.
    pub async fn refresh(&self, refresh_token: &(impl serde::Serialize + ?Sized)) -> (u16, Value) {
        let body = json!({"refresh_token": refresh_token});
        self.call("POST", "/api/v1/auth/refresh", None, Some(body))
            .await
    }

    /// Sends a request with `Authorization: Agent <key>`.
    pub async fn as_agent(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("authorization", format!("Agent {key}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Sends a request and returns the status and the JSON body (`Null` when there is none).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let resp = self.send(method, path, token, body).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    /// As the admin.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, Some(&self.admin_token), body).await
    }

    pub async fn create_task(&self, body: Value) -> Value {
        let (status, resp) = self.admin("POST", "/api/v1/tasks", Some(body)).await;
        assert_eq!(status, 201, "task not created: {resp}");
        resp["data"].clone()
    }

    /// Polls the task's status until it is `want`.
    pub async fn wait_status(&self, task_id: &str, want: &str, timeout: Duration) -> Value {
        wait_for(&format!("task {task_id} to be {want}"), timeout, || async {
            let (_, body) = self
                .admin("GET", &format!("/api/v1/tasks/{task_id}"), None)
                .await;
            if body["data"]["status"] == want {
                Ok(body["data"].clone())
            } else {
                Err(body.to_string())
            }
        })
        .await
    }

    /// Tasks of `capability` completed so far, from `GET /api/v1/queues`.
    pub async fn processed(&self, capability: &str) -> i64 {
        let (_, q) = self.admin("GET", "/api/v1/queues", None).await;
        q["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|q| q["capability"] == capability)
            .and_then(|g| g["processed_total"].as_i64())
            .unwrap_or(0)
    }

    /// Uploads a dataset body as the admin.
    pub async fn upload(&self, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/api/v1/datasets?name=test", self.base))
            .bearer_auth(&self.admin_token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Polls an execution until it ends; returns it.
    pub async fn wait_execution(&self, id: &str, timeout: Duration) -> Value {
        wait_for(&format!("execution {id} to end"), timeout, || async {
            let (_, body) = self
                .admin("GET", &format!("/api/v1/pipeline/{id}"), None)
                .await;
            match body["data"]["status"].as_str() {
                Some("completed" | "failed" | "cancelled") => Ok(body["data"].clone()),
                _ => Err(body.to_string()),
            }
        })
        .await
    }

    /// Downloads an execution's exported file.
    pub async fn results(&self, id: &str, format: &str) -> (u16, String) {
        let resp = self
            .send(
                "GET",
                &format!("/api/v1/pipeline/{id}/results?format={format}"),
                Some(&self.admin_token),
                None,
            )
            .await;
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }
}

/// The port in a file an API process wrote its bound address (`host:port`) to.
fn reported_port(port_file: &Path) -> Result<u16, String> {
    let text = std::fs::read_to_string(port_file).map_err(|e| format!("no port file yet ({e})"))?;
    text.trim()
        .parse::<SocketAddr>()
        .map(|a| a.port())
        .map_err(|e| format!("port file holds {text:?}: {e}"))
}

/// Waits until the API process `child` has reported its port in `port_file` and answers
/// `/api/v1/health` there; returns the port. Panics with the process's log if it exits first.
async fn wait_serving(
    http: &reqwest::Client,
    child: &mut Child,
    port_file: &Path,
    log: &Path,
) -> u16 {
    wait_for("mcp-api to serve", Duration::from_secs(60), async || {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("mcp-api exited with {status} before becoming healthy:\n{log}");
        }
        let port = reported_port(port_file)?;
        match http
            .get(format!("http://127.0.0.1:{port}/api/v1/health"))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => Ok(port),
            other => Err(format!("port {port}: {other:?}")),
        }
    })
    .await
}

impl Drop for App {
    fn drop(&mut self) {
        for mut c in self
            .workers
            .drain(..)
            .chain(self.replicas.drain(..))
            .chain(self.api.take())
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for log in ["api.log", "worker.log"] {
                if let Ok(text) = std::fs::read_to_string(self.dir.path().join(log)) {
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    eprintln!("--- last lines of {log} ---");
                    for line in tail.into_iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }
}
