//! Short-lived counters and flags shared by every replica: Redis in distributed mode, this
//! process's memory on a single node. Rate limits, login lockouts and revoked tokens live here.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
    time::{Duration, Instant},
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
    Memory(Arc<Mutex<HashMap<String, (u64, Instant)>>>),
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
    pub fn new(redis: Option<ConnectionManager>) -> Self {
        match redis {
            Some(conn) => Counters::Redis(conn),
            None => Counters::Memory(Default::default()),
        }
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
            Counters::Memory(map) => {
                let now = Instant::now();
                let mut map = map.lock().expect("counters lock");
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
                let flagged = flags
                    .iter()
                    .any(|f| map.get(f).is_some_and(|(_, until)| *until > now));
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
            Counters::Memory(map) => {
                let now = Instant::now();
                Ok(map
                    .lock()
                    .expect("counters lock")
                    .get(flag)
                    .filter(|(_, until)| *until > now)
                    .map(|(_, until)| *until - now))
            }
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
            Counters::Memory(map) => {
                map.lock()
                    .expect("counters lock")
                    .insert(flag.to_string(), (1, Instant::now() + ttl));
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
            Counters::Memory(map) => {
                map.lock().expect("counters lock").remove(key);
                Ok(())
            }
        }
    }
}
