//! The six pipeline stages as plain synchronous functions over one shard: records in, records
//! and statistics out. They know nothing of queues or databases ([`crate::pipeline`] runs them
//! as tasks), which keeps them testable like a library and lets them run on blocking threads.
//!
//! Shards travel as NDJSON. Ingestion writes `{"line": n, "raw": {...}}` lines; standardization
//! and every later stage write canonical records ([`mcp_shared::domain::pipeline::Record`]).

pub mod export;
pub mod ingestion;
pub mod processing;
pub mod quality;
pub mod standardization;
pub mod validation;

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use mcp_shared::domain::pipeline::Record;
use serde::{Deserialize, Serialize};

/// How many rejects one shard keeps with their reasons; past it they are only counted.
pub const MAX_REJECTS_KEPT: usize = 1000;

/// Progress is reported at least this often, in records (and at least every second by the caller).
pub const PROGRESS_EVERY: u64 = 1000;

/// A record a stage refused, with where it came from and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reject {
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub reason: String,
}

/// Rejects of one shard: the first [`MAX_REJECTS_KEPT`] in full, then a count, plus a count per
/// reason kind for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rejects {
    pub total: u64,
    pub by_reason: BTreeMap<String, u64>,
    pub kept: Vec<Reject>,
}

impl Rejects {
    pub fn add(&mut self, kind: &str, reject: Reject) {
        self.total += 1;
        *self.by_reason.entry(kind.to_string()).or_default() += 1;
        if self.kept.len() < MAX_REJECTS_KEPT {
            self.kept.push(reject);
        }
    }
}

/// The stage stopped because its task was cancelled or abandoned.
#[derive(Debug, PartialEq, Eq)]
pub struct Stopped;

/// What a running stage shares with its caller: a stop flag, the records done so far (read by
/// the caller's timer, so progress is current whenever it reports), and a nudge for the caller
/// every [`PROGRESS_EVERY`] records.
pub struct Control<'a> {
    pub stop: &'a AtomicBool,
    pub done: &'a AtomicU64,
    pub nudge: &'a (dyn Fn() + Sync),
}

impl Control<'_> {
    /// Called after each record: records the count, and every [`PROGRESS_EVERY`] records
    /// nudges the caller and stops early when asked to.
    pub fn tick(&self, done: u64) -> Result<(), Stopped> {
        self.done.store(done, Ordering::Relaxed);
        if done.is_multiple_of(PROGRESS_EVERY) {
            if self.stop.load(Ordering::Relaxed) {
                return Err(Stopped);
            }
            (self.nudge)();
        }
        Ok(())
    }

    /// A control that never stops and reports nowhere (tests, benchmarks).
    pub fn detached() -> Control<'static> {
        static NEVER: AtomicBool = AtomicBool::new(false);
        static DONE: AtomicU64 = AtomicU64::new(0);
        Control {
            stop: &NEVER,
            done: &DONE,
            nudge: &|| {},
        }
    }
}

/// Parses a shard of canonical records.
pub fn read_records(bytes: &[u8]) -> Result<Vec<Record>, String> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| serde_json::from_slice(l).map_err(|e| format!("corrupt shard: {e}")))
        .collect()
}

/// Writes records as NDJSON.
pub fn write_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        // A record is plain data: serialising it cannot fail.
        serde_json::to_writer(&mut out, r).expect("record serialises");
        out.push(b'\n');
    }
    out
}
