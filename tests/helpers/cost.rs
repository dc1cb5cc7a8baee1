//! What a benchmark run costs per task: CPU seconds by process (our binaries, redis-server and
//! PostgreSQL, read from `/proc`), PostgreSQL commits and row writes (`pg_stat_database`), and
//! Redis commands by name (`INFO commandstats`). Kernel time spent writing back to disk is not
//! charged to any process and is not shown.

use std::{collections::BTreeMap, time::Duration};

use super::App;

#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// CPU seconds (user + system, including reaped children) by process name.
    cpu: BTreeMap<String, f64>,
    /// `xact_commit`, `tup_inserted`, `tup_updated`, `tup_deleted`.
    pg: Option<[i64; 4]>,
    /// Calls by Redis command.
    redis: BTreeMap<String, u64>,
}

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on Linux).
const TICKS: f64 = 100.0;

fn stat(pid: u32) -> Option<(String, u32, f64)> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (name, rest) = raw.split_once(" (")?.1.rsplit_once(") ")?;
    let f: Vec<&str> = rest.split(' ').collect();
    let ppid = f.get(1)?.parse().ok()?;
    let ticks: f64 = f
        .get(11..15)?
        .iter()
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    Some((name.to_string(), ppid, ticks / TICKS))
}

/// CPU seconds of every process under `roots` (them included), by process name.
fn cpu_under(roots: &[u32]) -> BTreeMap<String, f64> {
    let all: Vec<(u32, String, u32, f64)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat(pid).map(|(name, ppid, cpu)| (pid, name, ppid, cpu)))
        .collect();
    let mut inside: Vec<u32> = roots.to_vec();
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, _, ppid, _) in &all {
            if inside.contains(ppid) && !inside.contains(pid) {
                inside.push(*pid);
                grew = true;
            }
        }
    }
    let mut by_name = BTreeMap::new();
    for (pid, name, _, cpu) in &all {
        if inside.contains(pid) && !roots[..1].contains(pid) {
            *by_name.entry(name.clone()).or_default() += cpu;
        }
    }
    by_name
}

async fn redis_calls(app: &App) -> BTreeMap<String, u64> {
    let Some(redis) = app.redis.as_ref() else {
        return BTreeMap::new();
    };
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

fn pg_counters(app: &App) -> [i64; 4] {
    let row = app.sql(
        "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = current_database()",
    );
    let v: Vec<i64> = row.split('|').map(|f| f.trim().parse().unwrap()).collect();
    [v[0], v[1], v[2], v[3]]
}

/// The counters now. PostgreSQL publishes its statistics about once a second, so they are read
/// until they stop moving (the engine is idle when a snapshot is taken).
pub async fn snapshot(app: &App) -> Snapshot {
    let pg = if app.postgres_pid().is_some() {
        let mut last = pg_counters(app);
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let now = pg_counters(app);
            // Our own reading commits too: one transaction per read.
            if now[1..] == last[1..] && now[0] - last[0] <= 1 {
                break;
            }
            last = now;
        }
        Some(last)
    } else {
        None
    };
    let mut roots = vec![std::process::id()];
    roots.extend(app.postgres_pid());
    Snapshot {
        cpu: cpu_under(&roots),
        pg,
        redis: redis_calls(app).await,
    }
}

/// Per task between two snapshots, as lines for a report.
pub fn per_task(before: &Snapshot, after: &Snapshot, tasks: usize) -> String {
    let n = tasks as f64;
    let mut cpu: Vec<(String, f64)> = after
        .cpu
        .iter()
        .map(|(k, v)| (k.clone(), (v - before.cpu.get(k).unwrap_or(&0.0)) / n * 1e6))
        .filter(|(_, us)| *us >= 0.5)
        .collect();
    cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = cpu.iter().map(|(_, us)| us).sum();
    let mut out = format!(
        "      CPU per task: {total:.0} µs = {}",
        cpu.iter()
            .map(|(k, us)| format!("{k} {us:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let (Some(a), Some(b)) = (after.pg, before.pg) {
        out += &format!(
            "\n      PostgreSQL per task: {:.3} commits, {:.2} rows inserted, {:.2} rows updated, {:.2} deleted",
            (a[0] - b[0]) as f64 / n,
            (a[1] - b[1]) as f64 / n,
            (a[2] - b[2]) as f64 / n,
            (a[3] - b[3]) as f64 / n,
        );
    }
    if !after.redis.is_empty() {
        let mut calls: Vec<(String, f64)> = after
            .redis
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    (v - before.redis.get(k).unwrap_or(&0)) as f64 / n,
                )
            })
            .filter(|(_, c)| *c >= 0.005)
            .collect();
        calls.sort_by(|a, b| b.1.total_cmp(&a.1));
        out += &format!(
            "\n      Redis commands per task: {:.2} = {}",
            calls.iter().map(|(_, c)| c).sum::<f64>(),
            calls
                .iter()
                .map(|(k, c)| format!("{k} {c:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out
}
