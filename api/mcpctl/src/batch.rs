//! `mcpctl batch FILE.jsonl`: one task (or pipeline execution) per line, submitted in chunks,
//! resumable after an interruption without submitting anything twice.
//!
//! Resumption rests on two things. A checkpoint file, rewritten atomically after every chunk the
//! server acknowledged, says how far the file got; a re-run skips that far. And the chunk that
//! was in flight when the process died is safe to send again: every line carries an
//! idempotency key derived from the file's SHA-256 and the line number (unless it brings its
//! own), so the server answers a replay with the task or execution it already made.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    client::{Client, Response, api_error},
    config::{Config, Output, write_private},
    error::{Error, Exit, Result},
    output::{Progress, bar},
};

pub const DEFAULT_CHUNK: usize = 1000;
pub const MAX_TASK_CHUNK: usize = 10_000;
pub const MAX_PIPELINE_CHUNK: usize = 1000;
/// Attempts per chunk when the server is overloaded or unreachable (replays are safe).
const ATTEMPTS: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tasks,
    Pipeline,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "task" | "tasks" => Ok(Self::Tasks),
            "pipeline" | "pipelines" => Ok(Self::Pipeline),
            other => Err(Error::usage(format!(
                "unknown --kind {other:?}: use task or pipeline"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Tasks => "tasks",
            Self::Pipeline => "pipeline",
        }
    }
}

pub struct Options {
    pub file: PathBuf,
    pub kind: Kind,
    pub chunk_size: usize,
    /// Ignore any checkpoint and start from the first line.
    pub restart: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Rejection {
    line: usize,
    error: String,
}

/// Progress of one file, saved after every acknowledged chunk.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    file: String,
    sha256: String,
    kind: String,
    /// Lines in the file that hold an item (blank lines excluded).
    lines: usize,
    /// Valid items, in file order, whose chunk the server acknowledged.
    acknowledged: usize,
    accepted: u64,
    /// Lines the server rejected.
    rejected: Vec<Rejection>,
    execution_ids: Vec<String>,
    complete: bool,
}

/// One valid line: its number (from 1) and the JSON object to send.
struct Item {
    line: usize,
    body: Value,
}

/// The idempotency key of a line: stable for the same file content and line, distinct
/// otherwise.
fn derived_key(sha256: &str, line: usize) -> String {
    format!("mcpctl-{}-{line}", &sha256[..32])
}

/// Splits the file into items and lines rejected locally (invalid JSON, not an object).
fn parse_lines(bytes: &[u8], sha256: &str) -> (Vec<Item>, Vec<Rejection>, usize) {
    let mut items = Vec::new();
    let mut rejected = Vec::new();
    let mut lines = 0;
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        lines += 1;
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(mut obj)) => {
                if !obj.contains_key("idempotency_key") {
                    obj.insert(
                        "idempotency_key".into(),
                        Value::String(derived_key(sha256, line)),
                    );
                }
                items.push(Item {
                    line,
                    body: Value::Object(obj),
                });
            }
            Ok(_) => rejected.push(Rejection {
                line,
                error: "invalid_line: a line must be a JSON object".into(),
            }),
            Err(e) => rejected.push(Rejection {
                line,
                error: format!("invalid_json: {e}"),
            }),
        }
    }
    (items, rejected, lines)
}

/// The item index a pipeline batch error names, in `details.field` (`executions[3].options…`)
/// or, for errors without a field (an unknown dataset), at the start of the message.
fn failing_index(body: &Value) -> Option<usize> {
    let err = &body["error"];
    let named = err["details"]["field"]
        .as_str()
        .or_else(|| err["message"].as_str())?;
    let rest = named.strip_prefix("executions[")?;
    rest[..rest.find(']')?].parse().ok()
}

fn error_text(resp: &Response) -> String {
    api_error(resp).message
}

pub async fn run(config: &Config, opts: Options) -> Result<Exit> {
    let max = match opts.kind {
        Kind::Tasks => MAX_TASK_CHUNK,
        Kind::Pipeline => MAX_PIPELINE_CHUNK,
    };
    if opts.chunk_size == 0 || opts.chunk_size > max {
        return Err(Error::usage(format!(
            "--chunk-size must be between 1 and {max} for {} batches",
            opts.kind.as_str()
        )));
    }
    let bytes = std::fs::read(&opts.file)
        .map_err(|e| Error::usage(format!("cannot read {}: {e}", opts.file.display())))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let (items, local_rejected, lines) = parse_lines(&bytes, &sha256);
    let path = config
        .checkpoint_dir()
        .join(format!("{sha256}-{}.json", opts.kind.as_str()));
    let mut cp = match (opts.restart, load(&path)?) {
        (false, Some(cp)) => cp,
        _ => Checkpoint {
            file: opts.file.display().to_string(),
            sha256: sha256.clone(),
            kind: opts.kind.as_str().into(),
            lines,
            ..Checkpoint::default()
        },
    };
    let resumed_after = cp.acknowledged;
    if resumed_after > 0 && !cp.complete {
        eprintln!(
            "resuming {}: {resumed_after} of {} items were acknowledged before (checkpoint {})",
            opts.file.display(),
            items.len(),
            path.display()
        );
    }
    if cp.complete {
        eprintln!(
            "{} was already submitted (checkpoint {}); use --restart to submit it again",
            opts.file.display(),
            path.display()
        );
    }

    let mut client = Client::authenticated(config)?;
    let mut progress = Progress::new();
    let total = items.len();
    while cp.acknowledged < total {
        let start = cp.acknowledged;
        let end = (start + opts.chunk_size).min(total);
        let chunk = &items[start..end];
        match opts.kind {
            Kind::Tasks => submit_tasks(&mut client, chunk, &mut cp).await?,
            Kind::Pipeline => submit_pipelines(&mut client, chunk, &mut cp).await?,
        }
        cp.acknowledged = end;
        save(&path, &cp)?;
        // Off a terminal (a log file), one line per tenth of the file is enough.
        if !progress.is_tty() && (end * 10 / total == start * 10 / total) && end < total {
            continue;
        }
        progress.draw(vec![format!(
            "{} {}/{} items  accepted {}  rejected {}",
            bar(end as u64, total as u64, 30),
            end,
            total,
            cp.accepted,
            cp.rejected.len() + local_rejected.len()
        )]);
    }
    cp.complete = true;
    save(&path, &cp)?;

    let mut rejected: Vec<Rejection> = local_rejected;
    rejected.extend(cp.rejected.iter().cloned());
    rejected.sort_by_key(|r| r.line);
    let summary = json!({
        "file": opts.file.display().to_string(),
        "sha256": sha256,
        "kind": opts.kind.as_str(),
        "lines": lines,
        "accepted": cp.accepted,
        "rejected_count": rejected.len(),
        "rejected": rejected,
        "resumed_after_items": resumed_after,
        "execution_ids": cp.execution_ids,
        "checkpoint": path.display().to_string(),
    });
    match config.output {
        Output::Json => println!("{summary}"),
        Output::Human => {
            println!(
                "{} of {lines} lines accepted, {} rejected",
                cp.accepted,
                rejected.len()
            );
            for r in &rejected {
                println!("  line {}: {}", r.line, r.error);
            }
        }
    }
    Ok(if rejected.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

fn load(path: &Path) -> Result<Option<Checkpoint>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::usage(format!(
                "checkpoint {} is unreadable ({e}); re-run with --restart",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::usage(format!("cannot read {}: {e}", path.display()))),
    }
}

fn save(path: &Path, cp: &Checkpoint) -> Result<()> {
    write_private(
        path,
        &serde_json::to_vec(cp).expect("checkpoint serializes"),
    )
}

/// A chunk over the server's size limits: not the lines' fault, so none is rejected.
fn too_large(resp: &Response, items: usize) -> Error {
    Error::failed(format!(
        "{}; the server refused a chunk of {items} items, re-run with a smaller --chunk-size \
         to continue from the checkpoint",
        error_text(resp)
    ))
}

/// Waits before another attempt: the server's `Retry-After`, else exponential backoff.
async fn backoff(attempt: u32, retry_after: Option<u64>) {
    let wait = retry_after
        .map(Duration::from_secs)
        .unwrap_or_else(|| Duration::from_millis(250 << attempt.min(5)));
    tokio::time::sleep(wait.min(Duration::from_secs(30))).await;
}

/// Sends one chunk until the server answers it. Replays are harmless (each item has an
/// idempotency key), so overload and connection failures are retried.
async fn send_chunk(client: &mut Client, path: &str, body: &Value) -> Result<Response> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = client.send(Method::POST, path, Some(body)).await;
        let retry_after = match &outcome {
            Ok(r) if r.status == 429 || r.status >= 500 => r.retry_after,
            Err(e) if e.exit == Exit::Server => None,
            _ => return outcome,
        };
        if attempt >= ATTEMPTS {
            return match outcome {
                Ok(r) => Err(api_error(&r)),
                Err(e) => Err(e),
            };
        }
        backoff(attempt, retry_after).await;
    }
}

/// Sends one chunk of tasks until the server acknowledges it.
async fn submit_tasks(client: &mut Client, chunk: &[Item], cp: &mut Checkpoint) -> Result<()> {
    let body = json!({"tasks": chunk.iter().map(|i| &i.body).collect::<Vec<_>>()});
    let resp = send_chunk(client, "/api/v1/tasks/batch", &body).await?;
    match resp.status {
        200..=299 => {
            cp.accepted += resp.body["data"]["accepted"].as_u64().unwrap_or(0);
            for r in resp.body["data"]["rejected"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let Some(item) = r["index"].as_u64().and_then(|i| chunk.get(i as usize)) else {
                    continue;
                };
                let e = &r["error"];
                let mut error = format!(
                    "{}: {}",
                    e["code"].as_str().unwrap_or("rejected"),
                    e["message"].as_str().unwrap_or("")
                );
                if let Some(f) = e["field"].as_str()
                    && !error.contains(f)
                {
                    error.push_str(&format!(" (field {f})"));
                }
                cp.rejected.push(Rejection {
                    line: item.line,
                    error,
                });
            }
            Ok(())
        }
        413 => Err(too_large(&resp, chunk.len())),
        // The chunk as a whole was refused: its lines are rejected.
        400 | 409 | 422 => {
            let error = error_text(&resp);
            cp.rejected.extend(chunk.iter().map(|i| Rejection {
                line: i.line,
                error: error.clone(),
            }));
            Ok(())
        }
        _ => Err(api_error(&resp)),
    }
}

/// Sends one chunk of pipeline executions. The server checks every item before starting any, so
/// a refused item is rejected by line and the rest sent again; items that did start meanwhile
/// are found again by their idempotency keys.
async fn submit_pipelines(client: &mut Client, chunk: &[Item], cp: &mut Checkpoint) -> Result<()> {
    let mut pending: BTreeMap<usize, &Item> = chunk.iter().enumerate().collect();
    while !pending.is_empty() {
        let order: Vec<usize> = pending.keys().copied().collect();
        let body =
            json!({"executions": order.iter().map(|i| &pending[i].body).collect::<Vec<_>>()});
        let resp = send_chunk(client, "/api/v1/pipeline/batch", &body).await?;
        match resp.status {
            200..=299 => {
                let ids = resp.body["data"]["execution_ids"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                cp.accepted += ids.len() as u64;
                cp.execution_ids
                    .extend(ids.iter().filter_map(|v| v.as_str().map(String::from)));
                break;
            }
            // Nothing started: the checkpoint lets a re-run with smaller chunks go on from here.
            413 => return Err(too_large(&resp, chunk.len())),
            400 | 404 | 409 | 422 => {
                let error = error_text(&resp);
                match failing_index(&resp.body).and_then(|i| order.get(i)) {
                    Some(k) => {
                        let item = pending.remove(k).expect("index from the order");
                        cp.rejected.push(Rejection {
                            line: item.line,
                            error,
                        });
                    }
                    None => {
                        cp.rejected.extend(pending.values().map(|i| Rejection {
                            line: i.line,
                            error: error.clone(),
                        }));
                        pending.clear();
                    }
                }
            }
            _ => return Err(api_error(&resp)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn lines_become_items_or_local_rejections_with_their_numbers() {
        let file = b"{\"type\":\"generic\"}\n\nnot json\n[1]\n{\"type\":\"generic\",\"idempotency_key\":\"mine\"}\n";
        let (items, rejected, lines) = parse_lines(file, SHA);
        assert_eq!(lines, 4);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].line, 1);
        assert_eq!(
            items[0].body["idempotency_key"],
            "mcpctl-0123456789abcdef0123456789abcdef-1"
        );
        assert_eq!(
            items[1].body["idempotency_key"], "mine",
            "a line's own key is kept"
        );
        assert_eq!(
            rejected.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert!(rejected[0].error.starts_with("invalid_json"));
    }

    #[test]
    fn pipeline_lines_get_a_key_too() {
        let (items, _, _) = parse_lines(b"\n{\"records\":[]}", SHA);
        assert_eq!(
            items[0].body["idempotency_key"],
            "mcpctl-0123456789abcdef0123456789abcdef-2"
        );
    }

    #[test]
    fn the_failing_pipeline_item_is_read_from_the_field() {
        let body = json!({"error": {"details": {"field": "executions[12].options.pii"}}});
        assert_eq!(failing_index(&body), Some(12));
        let body = json!({"error": {"message": "executions[2]: dataset not found"}});
        assert_eq!(failing_index(&body), Some(2));
        assert_eq!(failing_index(&json!({"error": {}})), None);
    }
}
