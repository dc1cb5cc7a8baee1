//! Short-lived counters and flags shared by every replica: Redis in distributed mode, this
//! process's memory on a single node. Rate limits, login lockouts and revoked tokens live here.
//!
//! On a single node the two are kept apart: counters (cheap to lose, created by anyone who sends
//! a request) are swept when there are too many, while flags (revocations, lockouts) are only
//! ever removed when they expire, and are written to a file beside the database so a restart
//! does not forget them.

use std::{
    collections::HashMap,
    io::Write,
    path::PathBuf,
    sync::{Arc, LazyLock, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use redis::aio::ConnectionManager;

const PREFIX: &str = "mcp:sec:";
/// Memory entries are swept of expired ones when the map reaches this size.
const SWEEP_AT: usize = 100_000;

/// A fixed-window count: how many hits so far, and when the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub hits: u64,
    pub resets_in: Duration,
}

#[derive(Clone)]
pub enum Counters {
    Redis(ConnectionManager),
    Memory(Arc<Memory>),
}

/// A single node's counters and flags.
#[derive(Default)]
pub struct Memory {
    counters: Mutex<HashMap<String, (u64, Instant)>>,
    /// Flag → when it expires (milliseconds since the Unix epoch, so it means the same after a
    /// restart).
    flags: Mutex<HashMap<String, u64>>,
    /// Where flags are kept across restarts: one `flag<TAB>expires-ms` line per change.
    file: Option<PathBuf>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Memory {
    /// Loads the flags kept in `file` that have not expired, and rewrites it with only those.
    fn open(file: Option<PathBuf>) -> std::io::Result<Self> {
        let mut flags = HashMap::new();
        if let Some(path) = &file {
            let now = now_ms();
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    for line in text.lines() {
                        if let Some((flag, until)) = line.split_once('\t')
                            && let Ok(until) = until.parse::<u64>()
                        {
                            flags.insert(flag.to_string(), until);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            flags.retain(|_, until| *until > now);
            let mut compacted = String::new();
            for (flag, until) in &flags {
                compacted.push_str(&format!("{flag}\t{until}\n"));
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, compacted)?;
            std::fs::rename(&tmp, path)?;
        }
        Ok(Self {
            counters: Mutex::default(),
            flags: Mutex::new(flags),
            file,
        })
    }

    /// Records a flag change (`until` 0: cleared) in the file, durably, before it takes effect.
    fn persist(&self, flag: &str, until: u64) -> std::io::Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(format!("{flag}\t{until}\n").as_bytes())?;
        f.sync_data()
    }

    fn flag_left(&self, flag: &str) -> Option<Duration> {
        let now = now_ms();
        let mut flags = self.flags.lock().expect("flags lock");
        match flags.get(flag) {
            Some(until) if *until > now => Some(Duration::from_millis(until - now)),
            Some(_) => {
                flags.remove(flag);
                None
            }
            None => None,
        }
    }
}

fn io_error(e: std::io::Error) -> redis::RedisError {
    redis::RedisError::from(e)
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Counters::Redis(_) => "Counters::Redis",
            Counters::Memory(_) => "Counters::Memory",
        })
    }
}

/// One round trip: count a hit in `KEYS[1]`'s window (starting it if new) and report whether
/// any further key is set. Both rate limits and revocation checks ride on every request.
const HIT_SCRIPT: &str = r"
local hits = 0
local ttl = 0
if ARGV[1] ~= '0' then
  hits = redis.call('INCR', KEYS[1])
  if hits == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
  ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
end
local flagged = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then flagged = 1 end
end
return {hits, ttl, flagged}
";

impl Counters {
    /// Redis when given; otherwise this process's memory, with flags kept in `flags_file`.
    pub fn new(
        redis: Option<ConnectionManager>,
        flags_file: Option<PathBuf>,
    ) -> std::io::Result<Self> {
        Ok(match redis {
            Some(conn) => Counters::Redis(conn),
            None => Counters::Memory(Arc::new(Memory::open(flags_file)?)),
        })
    }

    /// Counts a hit on `counter` within `window`, and says whether any of `flags` is set.
    /// `window` zero counts nothing.
    pub async fn hit_and_check(
        &self,
        counter: &str,
        window: Duration,
        flags: &[String],
    ) -> redis::RedisResult<(Count, bool)> {
        match self {
            Counters::Redis(conn) => {
                static SCRIPT: LazyLock<redis::Script> =
                    LazyLock::new(|| redis::Script::new(HIT_SCRIPT));
                let mut call = SCRIPT.key(format!("{PREFIX}{counter}"));
                for flag in flags {
                    call.key(format!("{PREFIX}{flag}"));
                }
                let (hits, ttl, flagged): (u64, i64, i64) = call
                    .arg(window.as_millis() as u64)
                    .invoke_async(&mut conn.clone())
                    .await?;
                Ok((
                    Count {
                        hits,
                        resets_in: Duration::from_millis(ttl.max(0) as u64),
                    },
                    flagged == 1,
                ))
            }
            Counters::Memory(memory) => {
                let now = Instant::now();
                let mut map = memory.counters.lock().expect("counters lock");
                if map.len() >= SWEEP_AT {
                    // Expired entries go; live ones past the bound are the oldest windows.
                    map.retain(|_, (_, until)| *until > now);
                    if map.len() >= SWEEP_AT {
                        let mut ends: Vec<Instant> = map.values().map(|(_, u)| *u).collect();
                        let cut = SWEEP_AT / 2;
                        ends.select_nth_unstable(cut);
                        let keep_after = ends[cut];
                        map.retain(|_, (_, until)| *until >= keep_after);
                    }
                }
                let count = if window.is_zero() {
                    Count {
                        hits: 0,
                        resets_in: Duration::ZERO,
                    }
                } else {
                    let entry = map
                        .entry(counter.to_string())
                        .and_modify(|e| {
                            if e.1 <= now {
                                *e = (0, now + window);
                            }
                        })
                        .or_insert((0, now + window));
                    entry.0 += 1;
                    Count {
                        hits: entry.0,
                        resets_in: entry.1 - now,
                    }
                };
                drop(map);
                let flagged = flags.iter().any(|f| memory.flag_left(f).is_some());
                Ok((count, flagged))
            }
        }
    }

    /// Counts a hit on `counter` within `window`.
    pub async fn hit(&self, counter: &str, window: Duration) -> redis::RedisResult<Count> {
        Ok(self.hit_and_check(counter, window, &[]).await?.0)
    }

    /// How long `flag` stays set, if it is.
    pub async fn flag_ttl(&self, flag: &str) -> redis::RedisResult<Option<Duration>> {
        match self {
            Counters::Redis(conn) => {
                let ttl: i64 = redis::cmd("PTTL")
                    .arg(format!("{PREFIX}{flag}"))
                    .query_async(&mut conn.clone())
                    .await?;
                Ok((ttl > 0).then(|| Duration::from_millis(ttl as u64)))
            }
            Counters::Memory(memory) => Ok(memory.flag_left(flag)),
        }
    }

    /// Sets `flag` for `ttl`.
    pub async fn set_flag(&self, flag: &str, ttl: Duration) -> redis::RedisResult<()> {
        let ttl = ttl.max(Duration::from_millis(1));
        match self {
            Counters::Redis(conn) => {
                redis::cmd("SET")
                    .arg(format!("{PREFIX}{flag}"))
                    .arg(1)
                    .arg("PX")
                    .arg(ttl.as_millis() as u64)
                    .query_async::<()>(&mut conn.clone())
                    .await
            }
            Counters::Memory(memory) => {
                let until = now_ms() + ttl.as_millis() as u64;
                memory.persist(flag, until).map_err(io_error)?;
                let mut flags = memory.flags.lock().expect("flags lock");
                if flags.len() % 4096 == 4095 {
                    // Only expired flags ever leave: a flood of new ones cannot push out a
                    // revocation or a lockout.
                    let now = now_ms();
                    flags.retain(|_, until| *until > now);
                }
                flags.insert(flag.to_string(), until);
                Ok(())
            }
        }
    }

    /// Forgets a counter or flag.
    pub async fn clear(&self, key: &str) -> redis::RedisResult<()> {
        match self {
            Counters::Redis(conn) => {
                redis::cmd("DEL")
                    .arg(format!("{PREFIX}{key}"))
                    .query_async::<()>(&mut conn.clone())
                    .await
            }
            Counters::Memory(memory) => {
                memory.counters.lock().expect("counters lock").remove(key);
                if memory
                    .flags
                    .lock()
                    .expect("flags lock")
                    .remove(key)
                    .is_some()
                {
                    memory.persist(key, 0).map_err(io_error)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flood_of_counters_never_evicts_a_flag() {
        let counters = Counters::new(None, None).unwrap();
        counters
            .set_flag("revoked:t", Duration::from_secs(600))
            .await
            .unwrap();
        for i in 0..SWEEP_AT + 10 {
            counters
                .hit(&format!("rl:x:{i}"), Duration::from_secs(600))
                .await
                .unwrap();
        }
        let (_, flagged) = counters
            .hit_and_check("rl:x:0", Duration::from_secs(60), &["revoked:t".into()])
            .await
            .unwrap();
        assert!(flagged);
    }

    #[tokio::test]
    async fn flags_outlive_the_process_when_kept_in_a_file() {
        let dir = std::env::temp_dir().join(format!("mcp-flags-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mcp.db.revocations");
        let first = Counters::new(None, Some(file.clone())).unwrap();
        first
            .set_flag("lock:u", Duration::from_secs(600))
            .await
            .unwrap();
        drop(first);
        let second = Counters::new(None, Some(file.clone())).unwrap();
        assert!(second.flag_ttl("lock:u").await.unwrap().is_some());
        assert!(second.flag_ttl("lock:other").await.unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
