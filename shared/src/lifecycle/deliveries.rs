//! The delivery log: deliveries counted where they happen.
//!
//! A built-in worker runs a delivered task before its start is committed (the start rides in the
//! same update as the completion when the task is quick, see [`super::commit`]). A task that
//! kills its worker process in that window would then never have its attempt counted, and would
//! crash worker after worker. So each delivery is first appended to a small local file, and a
//! worker process starting up counts, for every logged delivery of a process that is gone, the
//! attempt that process never recorded ([`replay`]); a task that keeps crashing its workers
//! therefore ends `dead` like one that keeps failing.
//!
//! Each process writes its own files and holds an exclusive lock on them while it lives, so a
//! starting process only replays the files of processes that have died. Files are rotated every
//! few seconds and removed once every delivery they record has been settled (its start or its
//! completion committed).

use std::{
    collections::HashMap,
    fs::File,
    io::{Read, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use uuid::Uuid;

use crate::Result;

/// How long one file takes new deliveries before the next one starts.
const ROTATE_AFTER: Duration = Duration::from_secs(5);
/// One entry: the task id and the attempt number it had when delivered.
const ENTRY: usize = 16 + 4;

#[derive(Debug)]
struct Generation {
    file: File,
    path: PathBuf,
    /// Deliveries written to this file whose start is not committed yet.
    unsettled: usize,
}

#[derive(Debug)]
struct State {
    dir: PathBuf,
    process: String,
    current: u64,
    opened: Instant,
    generations: HashMap<u64, Generation>,
}

/// This process's delivery log.
#[derive(Debug, Clone)]
pub struct DeliveryLog {
    state: Arc<Mutex<State>>,
}

/// A delivery in the log; dropping it (once the delivery is settled) lets its file go.
#[derive(Debug)]
pub struct Logged {
    log: DeliveryLog,
    generation: u64,
}

impl DeliveryLog {
    /// A log in `dir` (created if missing) for this process.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let process = format!(
            "{}-{}",
            std::process::id(),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let log = Self {
            state: Arc::new(Mutex::new(State {
                dir: dir.to_path_buf(),
                process,
                current: 0,
                opened: Instant::now(),
                generations: HashMap::new(),
            })),
        };
        log.state
            .lock()
            .expect("delivery log lock")
            .open_generation(0)?;
        Ok(log)
    }

    /// Appends a delivery of `task` at `attempt` (the attempt count before this delivery). The
    /// write reaches the operating system before this returns, so it survives the process.
    pub fn record(&self, task: Uuid, attempt: i32) -> Result<Logged> {
        let mut entry = [0u8; ENTRY];
        entry[..16].copy_from_slice(task.as_bytes());
        entry[16..].copy_from_slice(&attempt.to_le_bytes());
        let mut state = self.state.lock().expect("delivery log lock");
        if state.opened.elapsed() >= ROTATE_AFTER {
            let next = state.current + 1;
            state.open_generation(next)?;
            state.retire_settled();
        }
        let generation = state.current;
        let current = state
            .generations
            .get_mut(&generation)
            .expect("the current file is open");
        current.file.write_all(&entry)?;
        current.unsettled += 1;
        Ok(Logged {
            log: self.clone(),
            generation,
        })
    }
}

impl State {
    fn open_generation(&mut self, generation: u64) -> Result<()> {
        let path = self
            .dir
            .join(format!("deliveries-{}-{generation}.log", self.process));
        let file = File::options().create(true).append(true).open(&path)?;
        // Held while this process lives: a starting process replays only unlocked files.
        file.try_lock().map_err(|e| {
            crate::Error::Io(std::io::Error::other(format!(
                "locking the delivery log {}: {e}",
                path.display()
            )))
        })?;
        self.generations.insert(
            generation,
            Generation {
                file,
                path,
                unsettled: 0,
            },
        );
        self.current = generation;
        self.opened = Instant::now();
        Ok(())
    }

    /// Removes the files, other than the current one, whose deliveries are all settled.
    fn retire_settled(&mut self) {
        let current = self.current;
        self.generations.retain(|g, file| {
            let keep = *g == current || file.unsettled > 0;
            if !keep {
                let _ = std::fs::remove_file(&file.path);
            }
            keep
        });
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let mut state = self.log.state.lock().expect("delivery log lock");
        if let Some(g) = state.generations.get_mut(&self.generation) {
            g.unsettled = g.unsettled.saturating_sub(1);
        }
        if self.generation != state.current {
            state.retire_settled();
        }
    }
}

/// The deliveries logged by processes that are gone: (task, attempt when delivered). The files
/// are read and removed; files a live process holds are left alone.
pub fn take_orphaned(dir: &Path) -> Result<Vec<(Uuid, i32)>> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(found);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_log = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("deliveries-") && n.ends_with(".log"));
        if !is_log {
            continue;
        }
        let Ok(mut file) = File::options().read(true).write(true).open(&path) else {
            continue;
        };
        if file.try_lock().is_err() {
            // Its process is alive.
            continue;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        for chunk in bytes.chunks_exact(ENTRY) {
            let id = Uuid::from_slice(&chunk[..16]).expect("16 bytes");
            let attempt = i32::from_le_bytes(chunk[16..].try_into().expect("4 bytes"));
            found.push((id, attempt));
        }
        std::fs::remove_file(&path)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mcp-deliveries-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_live_log_is_left_alone_and_a_dead_one_is_replayed_once() {
        let dir = temp_dir();
        let log = DeliveryLog::open(&dir).unwrap();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let settled = log.record(a, 0).unwrap();
        let _unsettled = log.record(b, 2).unwrap();
        drop(settled);
        // While this process holds the log, a starting process finds nothing to replay.
        assert!(take_orphaned(&dir).unwrap().is_empty());
        // The process is gone (its lock with it): its deliveries are found, once. A settled one
        // is found too; replaying it changes nothing, since its attempt was counted.
        drop(log);
        drop(_unsettled);
        let mut found = take_orphaned(&dir).unwrap();
        found.sort();
        let mut want = vec![(a, 0), (b, 2)];
        want.sort();
        assert_eq!(found, want);
        assert!(take_orphaned(&dir).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
