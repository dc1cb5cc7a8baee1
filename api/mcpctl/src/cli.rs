//! The command line: global flags, one command, and the exit code.

use std::{
    io::{IsTerminal, Read, Write},
    path::PathBuf,
    process::ExitCode,
};

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::{
    batch::{self, Kind},
    client::Client,
    config::{Config, Credentials, Flags, Output},
    error::{Error, Exit, Result},
    output::table,
    watch,
};

const USAGE: &str = "mcpctl: command-line client of the TechDeck MCP API

usage: mcpctl [--url URL] [--token TOKEN] [-o human|json] [--config PATH] COMMAND

commands:
  login [--username NAME] [--password-stdin]
                        log in and store the session (password from stdin, MCP_PASSWORD, or a prompt)
  logout                end the session on the server and forget it here
  submit --type TYPE [--priority critical|high|medium|low] [--capability NAME]...
         [--payload JSON|@FILE|-] [--idempotency-key KEY] [--run-at RFC3339]
         [--timeout-seconds N] [--max-attempts N]
                        create a task and print it
  batch FILE.jsonl [--kind task|pipeline] [--chunk-size N] [--restart]
                        submit one task (or pipeline execution) per line, in chunks (default 1000),
                        priority low unless a line says otherwise; an interrupted run resumes from
                        its checkpoint without submitting a line twice
  watch task ID | watch pipeline ID
                        follow live progress until it ends
  task get ID | task cancel ID | task retry ID
  pipeline get ID
  agents [--capability NAME]... [--type TYPE] [--status STATUS]
  queues
  schedules list | schedules get ID | schedules pause ID | schedules resume ID
  schedules delete ID
  schedules create --name NAME (--cron EXPR | --every SECONDS) [--time-zone TZ]
         [--start-at RFC3339] (--task JSON|@FILE|- | --pipeline JSON|@FILE|-)
         [--overlap skip|queue|cancel_previous] [--catch-up skip|one|all] [--paused]
                        recurring schedules: a task (the body of submit's request) or a pipeline
                        execution at each occurrence of a cron expression or an interval

configuration (flags > environment > config file):
  --url        MCP_URL       server, default http://127.0.0.1:5001
  --token      MCP_TOKEN     use this access token instead of the stored session
  -o/--output  MCPCTL_OUTPUT human (default) or json: JSON on stdout, messages on stderr
  --config     MCPCTL_CONFIG config file, default ~/.config/mcpctl/config.json
               ({\"url\": ..., \"output\": ..., \"username\": ...}); the session
               (credentials.json, mode 0600) and batch checkpoints live beside it
  MCP_USERNAME, MCP_PASSWORD for login

exit codes:
  0  ok: done, the watched task or execution completed, every batch line accepted
  1  the operation failed: task dead or cancelled, execution failed or cancelled, batch lines
     rejected, or the server refused the request (400, 409, 413, 422)
  2  usage or configuration error
  3  authentication: not logged in, bad credentials, expired session, not permitted (401, 403)
  4  not found (404)
  5  server error or unreachable (5xx, 429 after retries, connection failures)";

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exit = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => Err(Error::server(format!("cannot start the runtime: {e}"))),
    };
    match exit {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("mcpctl: {}", e.message);
            ExitCode::from(e.exit as u8)
        }
    }
}

/// The arguments left after the global flags, consumed by the command.
pub(crate) struct Args {
    rest: Vec<String>,
}

impl Args {
    /// Removes `--name VALUE` / `--name=VALUE` (every occurrence) and returns the values.
    pub(crate) fn values(&mut self, names: &[&str]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.rest.len() {
            let arg = &self.rest[i];
            if let Some((flag, value)) = arg.split_once('=')
                && names.contains(&flag)
                && flag.starts_with("--")
            {
                out.push(value.to_string());
                self.rest.remove(i);
            } else if names.contains(&arg.as_str()) {
                if i + 1 >= self.rest.len() {
                    return Err(Error::usage(format!("{arg} needs a value")));
                }
                out.push(self.rest.remove(i + 1));
                self.rest.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(out)
    }

    pub(crate) fn value(&mut self, names: &[&str]) -> Result<Option<String>> {
        let mut v = self.values(names)?;
        if v.len() > 1 {
            return Err(Error::usage(format!("{} given twice", names[0])));
        }
        Ok(v.pop())
    }

    /// Removes the first argument when it is `word` (a subcommand that takes flags).
    pub(crate) fn subcommand(&mut self, word: &str) -> bool {
        let found = self.rest.first().is_some_and(|a| a == word);
        if found {
            self.rest.remove(0);
        }
        found
    }

    pub(crate) fn switch(&mut self, name: &str) -> bool {
        let before = self.rest.len();
        self.rest.retain(|a| a != name);
        self.rest.len() != before
    }

    /// The positional arguments; any flag still here is unknown to the command.
    pub(crate) fn positionals(self) -> Result<Vec<String>> {
        if let Some(f) = self.rest.iter().find(|a| a.starts_with('-') && a.len() > 1) {
            return Err(Error::usage(format!(
                "unknown option {f}; see mcpctl --help"
            )));
        }
        Ok(self.rest)
    }
}

/// Task and execution ids are UUIDs; anything else is a typo, not something to look up.
pub(crate) fn check_id(id: &str) -> Result<&str> {
    let hex_groups = id.split('-').map(str::len).collect::<Vec<_>>() == [8, 4, 4, 4, 12];
    if hex_groups && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(Error::usage(format!(
            "{id:?} is not a task or execution id (a UUID)"
        )))
    }
}

pub(crate) fn parse_number<T: std::str::FromStr>(
    flag: &str,
    v: Option<String>,
) -> Result<Option<T>> {
    v.map(|s| {
        s.parse()
            .map_err(|_| Error::usage(format!("{flag} must be a number, not {s:?}")))
    })
    .transpose()
}

async fn run(args: Vec<String>) -> Result<Exit> {
    let mut args = Args { rest: args };
    if args.switch("--help") | args.switch("-h") {
        println!("{USAGE}");
        return Ok(Exit::Ok);
    }
    if args.switch("--version") | args.switch("-V") {
        println!("mcpctl {}", env!("CARGO_PKG_VERSION"));
        return Ok(Exit::Ok);
    }
    let flags = Flags {
        url: args.value(&["--url"])?,
        token: args.value(&["--token"])?,
        output: args.value(&["--output", "-o"])?,
        config: args.value(&["--config"])?,
    };
    let config = Config::resolve(flags)?;
    let Some(first) = args.rest.first().cloned() else {
        return Err(Error::usage("no command given; see mcpctl --help"));
    };
    args.rest.remove(0);
    match first.as_str() {
        "login" => login(&config, args).await,
        "logout" => logout(&config, args).await,
        "submit" => submit(&config, args).await,
        "batch" => batch_cmd(&config, args).await,
        "watch" => match args.positionals()?.as_slice() {
            [what, id] if what == "task" => watch::task(&config, check_id(id)?).await,
            [what, id] if what == "pipeline" => watch::pipeline(&config, check_id(id)?).await,
            _ => Err(Error::usage(
                "usage: mcpctl watch task ID | watch pipeline ID",
            )),
        },
        "task" => task_cmd(&config, args).await,
        "pipeline" => match args.positionals()?.as_slice() {
            [get, id] if get == "get" => pipeline_get(&config, check_id(id)?).await,
            _ => Err(Error::usage("usage: mcpctl pipeline get ID")),
        },
        "agents" => agents(&config, args).await,
        "queues" => {
            args.positionals()?;
            queues(&config).await
        }
        "schedules" => crate::schedules::run(&config, args).await,
        "help" => {
            println!("{USAGE}");
            Ok(Exit::Ok)
        }
        other => Err(Error::usage(format!(
            "unknown command {other:?}; see mcpctl --help"
        ))),
    }
}

/// Reads a line from the terminal without echoing it (`stty -echo`, restored after).
fn prompt_secret(label: &str) -> Result<String> {
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
    };
    let hidden = stty("-echo").is_ok_and(|s| s.success());
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    if hidden {
        let _ = stty("echo");
        eprintln!();
    }
    read.map_err(|e| Error::usage(format!("cannot read the password: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn login(config: &Config, mut args: Args) -> Result<Exit> {
    let username = args.value(&["--username", "-u"])?;
    let from_stdin = args.switch("--password-stdin");
    if !args.positionals()?.is_empty() {
        return Err(Error::usage(
            "usage: mcpctl login [--username NAME] [--password-stdin]",
        ));
    }
    let interactive = std::io::stdin().is_terminal();
    let username = match username.or_else(|| config.username.clone()) {
        Some(u) => u,
        None if interactive && !from_stdin => {
            eprint!("username: ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Error::usage(format!("cannot read the username: {e}")))?;
            line.trim().to_string()
        }
        None => {
            return Err(Error::usage(
                "no username: pass --username or set MCP_USERNAME",
            ));
        }
    };
    let password = if from_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Error::usage(format!("cannot read the password from stdin: {e}")))?;
        s.trim_end_matches(['\r', '\n']).to_string()
    } else if let Ok(p) = std::env::var("MCP_PASSWORD") {
        p
    } else if interactive {
        prompt_secret("password: ")?
    } else {
        return Err(Error::usage(
            "no password: use --password-stdin, MCP_PASSWORD, or run in a terminal",
        ));
    };
    if username.is_empty() || password.is_empty() {
        return Err(Error::usage("username and password must not be empty"));
    }
    let creds = Client::anonymous(config)?
        .login(&username, &password)
        .await?;
    let path = config.credentials_path();
    creds.save(&path)?;
    match config.output {
        Output::Json => println!(
            "{}",
            json!({"url": creds.url, "username": creds.username, "expires_at": creds.expires_at, "credentials": path.display().to_string()})
        ),
        Output::Human => eprintln!("logged in to {} as {}", creds.url, creds.username),
    }
    Ok(Exit::Ok)
}

async fn logout(config: &Config, args: Args) -> Result<Exit> {
    args.positionals()?;
    let path = config.credentials_path();
    let stored = Credentials::load(&path).ok().flatten();
    // The server revokes the session (every token of the login) first; the local copy goes
    // either way, so a server that cannot be reached does not leave the session on disk.
    let told = match stored {
        Some(creds) if creds.url == config.url && config.token.is_none() => {
            let body = json!({"refresh_token": creds.refresh_token});
            match Client::authenticated(config) {
                Ok(mut client) => client
                    .call(Method::POST, "/api/v1/auth/logout", Some(&body))
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            }
        }
        _ => Ok(()),
    };
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("not logged in");
            return Ok(Exit::Ok);
        }
        Err(e) => {
            return Err(Error::usage(format!(
                "cannot remove {}: {e}",
                path.display()
            )));
        }
    }
    match told {
        Ok(()) => {
            eprintln!("logged out");
            Ok(Exit::Ok)
        }
        // An expired session is already over; anything else may have left it usable.
        Err(e) if e.exit == Exit::Auth => {
            eprintln!("logged out (the session had already ended)");
            Ok(Exit::Ok)
        }
        Err(e) => Err(Error::new(
            e.exit,
            format!(
                "the stored session was removed, but the server did not revoke it: {}",
                e.message
            ),
        )),
    }
}

/// `--payload`: inline JSON, `@FILE`, or `-` for stdin.
fn read_payload(arg: &str) -> Result<Value> {
    read_json("--payload", arg)
}

/// A flag's JSON value: inline, `@FILE`, or `-` for stdin.
pub(crate) fn read_json(flag: &str, arg: &str) -> Result<Value> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Error::usage(format!("cannot read {flag} from stdin: {e}")))?;
        s
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path)
            .map_err(|e| Error::usage(format!("cannot read {flag} file {path}: {e}")))?
    } else {
        arg.to_string()
    };
    serde_json::from_str(&text).map_err(|e| Error::usage(format!("{flag} is not valid JSON: {e}")))
}

async fn submit(config: &Config, mut args: Args) -> Result<Exit> {
    let task_type = args.value(&["--type", "-t"])?;
    let priority = args.value(&["--priority", "-p"])?;
    let capabilities: Vec<String> = args
        .values(&["--capability", "-c"])?
        .iter()
        .flat_map(|c| {
            c.split(',')
                .map(str::trim)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|c| !c.is_empty())
        .collect();
    let payload = args.value(&["--payload"])?;
    let key = args.value(&["--idempotency-key"])?;
    let run_at = args.value(&["--run-at"])?;
    let timeout: Option<u64> =
        parse_number("--timeout-seconds", args.value(&["--timeout-seconds"])?)?;
    let attempts: Option<u64> = parse_number("--max-attempts", args.value(&["--max-attempts"])?)?;
    if !args.positionals()?.is_empty() {
        return Err(Error::usage(
            "submit takes no positional arguments; see mcpctl --help",
        ));
    }
    let Some(task_type) = task_type else {
        return Err(Error::usage(
            "submit needs --type (generic, validation, analysis, …)",
        ));
    };
    let mut body = Map::new();
    body.insert("type".into(), json!(task_type));
    body.insert(
        "payload".into(),
        payload
            .as_deref()
            .map(read_payload)
            .transpose()?
            .unwrap_or_else(|| json!({})),
    );
    if let Some(p) = priority {
        body.insert("priority".into(), json!(p));
    }
    if !capabilities.is_empty() {
        body.insert("required_capabilities".into(), json!(capabilities));
    }
    if let Some(k) = key {
        body.insert("idempotency_key".into(), json!(k));
    }
    if let Some(r) = run_at {
        body.insert("run_at".into(), json!(r));
    }
    if let Some(t) = timeout {
        body.insert("timeout_seconds".into(), json!(t));
    }
    if let Some(a) = attempts {
        body.insert("max_attempts".into(), json!(a));
    }
    let mut client = Client::authenticated(config)?;
    let resp = client
        .send(Method::POST, "/api/v1/tasks", Some(&Value::Object(body)))
        .await?;
    let replay = resp.status == 200;
    let mut envelope = crate::client::ok_envelope(resp)?;
    if replay {
        eprintln!("an earlier request with this idempotency key created this task");
    }
    print_task(config, envelope["data"].take());
    Ok(Exit::Ok)
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `key  value` lines.
pub(crate) fn fields(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<width$}  {v}");
    }
}

fn print_task(config: &Config, task: Value) {
    if config.output == Output::Json {
        println!("{task}");
        return;
    }
    let caps = task["required_capabilities"]
        .as_array()
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join(","))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "-".into());
    let mut rows = vec![
        ("id", text(&task["id"])),
        ("type", text(&task["type"])),
        ("priority", text(&task["priority"])),
        ("status", text(&task["status"])),
        ("progress", format!("{}%", text(&task["progress"]))),
        ("capabilities", caps),
        (
            "attempt",
            format!("{}/{}", text(&task["attempt"]), text(&task["max_attempts"])),
        ),
        ("agent", text(&task["agent_id"])),
        ("created_at", text(&task["created_at"])),
        ("updated_at", text(&task["updated_at"])),
    ];
    for (key, name) in [
        ("idempotency_key", "idempotency_key"),
        ("run_at", "run_at"),
        ("execution_id", "execution_id"),
        ("stage", "stage"),
        ("error", "error"),
        ("result", "result"),
    ] {
        if !task[key].is_null() {
            rows.push((name, text(&task[key])));
        }
    }
    fields(&rows);
}

async fn task_cmd(config: &Config, args: Args) -> Result<Exit> {
    let pos = args.positionals()?;
    let (verb, id) = match pos.as_slice() {
        [verb, id] => (verb.as_str(), check_id(id)?),
        _ => return Err(Error::usage("usage: mcpctl task get|cancel|retry ID")),
    };
    let mut client = Client::authenticated(config)?;
    let task = match verb {
        "get" => client.get(&format!("/api/v1/tasks/{id}")).await?,
        "cancel" | "retry" => client
            .call(Method::POST, &format!("/api/v1/tasks/{id}/{verb}"), None)
            .await?["data"]
            .take(),
        other => {
            return Err(Error::usage(format!(
                "unknown task command {other:?}: use get, cancel or retry"
            )));
        }
    };
    print_task(config, task);
    Ok(Exit::Ok)
}

async fn pipeline_get(config: &Config, id: &str) -> Result<Exit> {
    let mut client = Client::authenticated(config)?;
    let mut execution = client.get(&format!("/api/v1/pipeline/{id}")).await?;
    let progress = client
        .get(&format!("/api/v1/pipeline/{id}/agent-progress"))
        .await?;
    if config.output == Output::Json {
        execution["progress"] = progress;
        println!("{execution}");
        return Ok(Exit::Ok);
    }
    fields(&[
        ("execution_id", text(&execution["execution_id"])),
        ("status", text(&execution["status"])),
        ("priority", text(&execution["priority"])),
        ("progress", format!("{}%", text(&progress["progress"]))),
        ("current_stage", text(&progress["current_stage"])),
        ("created_at", text(&execution["created_at"])),
        ("finished_at", text(&execution["finished_at"])),
    ]);
    println!();
    let rows: Vec<Vec<String>> = progress["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                text(&s["stage"]),
                text(&s["status"]),
                format!("{}%", text(&s["progress"])),
                text(&s["records_in"]),
                text(&s["records_out"]),
            ]
        })
        .collect();
    table(&["STAGE", "STATUS", "PROGRESS", "IN", "OUT"], &rows);
    Ok(Exit::Ok)
}

/// Query-string encoding of a user-given value (capability names, types, statuses).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn agents(config: &Config, mut args: Args) -> Result<Exit> {
    let mut query = vec!["limit=1000".to_string()];
    for c in args.values(&["--capability", "-c"])? {
        query.push(format!("capability={}", encode(&c)));
    }
    if let Some(t) = args.value(&["--type"])? {
        query.push(format!("type={}", encode(&t)));
    }
    if let Some(s) = args.value(&["--status"])? {
        query.push(format!("status={}", encode(&s)));
    }
    args.positionals()?;
    let mut client = Client::authenticated(config)?;
    let list = client
        .get(&format!("/api/v1/agents/discover?{}", query.join("&")))
        .await?;
    if config.output == Output::Json {
        println!("{list}");
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let caps = a["capabilities"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| match c {
                    Value::String(s) => s.clone(),
                    c => text(&c["name"]),
                })
                .collect::<Vec<_>>()
                .join(",");
            vec![
                text(&a["id"]),
                text(&a["name"]),
                text(&a["type"]),
                text(&a["status"]),
                format!(
                    "{}/{}",
                    text(&a["current_load"]),
                    text(&a["max_concurrency"])
                ),
                text(&a["last_seen"]),
                caps,
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "TYPE",
            "STATUS",
            "LOAD",
            "LAST_SEEN",
            "CAPABILITIES",
        ],
        &rows,
    );
    Ok(Exit::Ok)
}

async fn queues(config: &Config) -> Result<Exit> {
    let mut client = Client::authenticated(config)?;
    let list = client.get("/api/v1/queues").await?;
    if config.output == Output::Json {
        println!("{list}");
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|q| {
            let p = &q["pending"];
            vec![
                text(&q["name"]),
                text(&q["capability"]),
                text(&p["critical"]),
                text(&p["high"]),
                text(&p["medium"]),
                text(&p["low"]),
                text(&q["scheduled"]),
                text(&q["running"]),
                text(&q["dead"]),
                if q["paused"] == true { "yes" } else { "no" }.into(),
                text(&q["processed_total"]),
                text(&q["failed_total"]),
            ]
        })
        .collect();
    table(
        &[
            "QUEUE",
            "CAPABILITY",
            "CRITICAL",
            "HIGH",
            "MEDIUM",
            "LOW",
            "SCHEDULED",
            "RUNNING",
            "DEAD",
            "PAUSED",
            "PROCESSED",
            "FAILED",
        ],
        &rows,
    );
    Ok(Exit::Ok)
}

async fn batch_cmd(config: &Config, mut args: Args) -> Result<Exit> {
    let kind = match args.value(&["--kind"])? {
        Some(k) => Kind::parse(&k)?,
        None => Kind::Tasks,
    };
    let chunk_size = parse_number("--chunk-size", args.value(&["--chunk-size"])?)?
        .unwrap_or(batch::DEFAULT_CHUNK);
    let restart = args.switch("--restart");
    let file = match args.positionals()?.as_slice() {
        [f] => PathBuf::from(f),
        _ => {
            return Err(Error::usage(
                "usage: mcpctl batch FILE.jsonl [--kind task|pipeline]",
            ));
        }
    };
    batch::run(
        config,
        batch::Options {
            file,
            kind,
            chunk_size,
            restart,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Args {
        Args {
            rest: a.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn flags_are_taken_wherever_they_are() {
        let mut a = args(&[
            "submit",
            "--type",
            "generic",
            "-c",
            "a",
            "--capability=b",
            "-o",
            "json",
        ]);
        assert_eq!(
            a.value(&["--output", "-o"]).unwrap().as_deref(),
            Some("json")
        );
        assert_eq!(a.values(&["--capability", "-c"]).unwrap(), vec!["a", "b"]);
        assert_eq!(a.value(&["--type"]).unwrap().as_deref(), Some("generic"));
        assert_eq!(a.positionals().unwrap(), vec!["submit"]);
    }

    #[test]
    fn unknown_and_valueless_flags_are_usage_errors() {
        assert_eq!(
            args(&["queues", "--bogus"]).positionals().unwrap_err().exit,
            Exit::Usage
        );
        assert_eq!(
            args(&["--url"]).value(&["--url"]).unwrap_err().exit,
            Exit::Usage
        );
        assert!(
            args(&["--payload", "-"])
                .value(&["--payload"])
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn ids_must_be_uuids() {
        assert!(check_id("01a21034-a93f-734a-a64a-0eb1410f2422").is_ok());
        assert_eq!(check_id("nope").unwrap_err().exit, Exit::Usage);
        assert!(check_id("01a21034-a93f-734a-a64a-0eb1410f242z").is_err());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("stage_export"), "stage_export");
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}
