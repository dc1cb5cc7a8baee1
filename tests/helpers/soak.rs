//! The scale-out soak, shared by the black-box test (20,000 tasks) and the benchmark (200,000):
//! two API processes and three worker processes on PostgreSQL + Redis, tasks of all four tiers
//! submitted at a steady rate, and every `kill_every` one worker process and one API process
//! SIGKILLed and started again. It checks that every task completed exactly once and reports
//! how fast.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{App, Mode, wait_for};

const TIERS: [&str; 4] = ["critical", "high", "medium", "low"];
const CHUNK: usize = 1000;

pub struct Soak {
    pub tasks: usize,
    /// Submission rate, tasks per second (in chunks of 1,000).
    pub rate: f64,
    pub kill_every: Duration,
    /// PostgreSQL with `fsync` on (the benchmark) or off (the test).
    pub durable: bool,
}

#[derive(Debug)]
pub struct SoakReport {
    pub elapsed: Duration,
    pub worker_kills: usize,
    pub api_kills: usize,
    /// Milliseconds from a task's creation to its completion, from the task rows.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Tasks that needed more than one attempt (their worker was killed under them).
    pub retried: usize,
}

/// `task.completed` events per task, read from the Redis event stream from `start` on.
/// Tells the event reader to stop, and tells the soak that the reader has its starting point.
#[derive(Clone, Default)]
struct ReaderState(Arc<AtomicU8>);

impl ReaderState {
    fn set_ready(&self) {
        self.0.fetch_max(1, Ordering::SeqCst);
    }
    fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst) >= 1
    }
    fn stop(&self) {
        self.0.store(2, Ordering::SeqCst);
    }
    fn stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst) == 2
    }
}

type Completions = Arc<Mutex<HashMap<String, u32>>>;

fn count_completions(redis_url: String, stop: ReaderState) -> Completions {
    let seen: Completions = Arc::default();
    let out = seen.clone();
    tokio::spawn(async move {
        let client = redis::Client::open(redis_url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        // From the newest entry at the start: everything the soak causes comes after it.
        let newest: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg("mcp:events")
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut last = newest.first().map_or("0-0".to_string(), |e| e.0.clone());
        stop.set_ready();
        while !stop.stopped() {
            let read: redis::RedisResult<redis::streams::StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(5000)
                .arg("BLOCK")
                .arg(200)
                .arg("STREAMS")
                .arg("mcp:events")
                .arg(&last)
                .query_async(&mut conn)
                .await;
            let Ok(reply) = read else {
                // Redis is gone (the soak ended or failed): wait, so the runtime can stop us.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            for key in reply.keys {
                for entry in key.ids {
                    last = entry.id.clone();
                    let Some(redis::Value::BulkString(raw)) = entry.map.get("e") else {
                        continue;
                    };
                    let event: Value = serde_json::from_slice(raw).unwrap();
                    if event["type"] == "task.completed" {
                        let id = event["data"]["task_id"].as_str().unwrap().to_string();
                        *seen.lock().unwrap().entry(id).or_default() += 1;
                    }
                }
            }
        }
    });
    out
}

/// Posts one chunk of tasks to whichever API process answers.
async fn submit_chunk(app: &App, bases: &[String], first: usize, count: usize) {
    let tasks: Vec<Value> = (first..first + count)
        .map(|i| {
            json!({
                "type": "generic",
                "priority": TIERS[i % TIERS.len()],
                "payload": {"i": i},
                "max_attempts": 10,
            })
        })
        .collect();
    let body = json!({ "tasks": tasks });
    for base in bases.iter().cycle().take(bases.len() * 20) {
        let res = app
            .http
            .post(format!("{base}/api/v1/tasks/batch"))
            .bearer_auth(&app.admin_token)
            .json(&body)
            .send()
            .await;
        match res {
            Ok(r) if r.status().as_u16() == 202 => {
                let v: Value = r.json().await.unwrap();
                assert_eq!(
                    v["data"]["accepted"], count,
                    "the whole chunk is accepted: {}",
                    v["data"]["rejected"]
                );
                return;
            }
            Ok(r) => panic!("batch refused: {} {}", r.status(), r.text().await.unwrap()),
            // That API process is being restarted: try the next one.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("no API process accepted a batch");
}

pub async fn run(soak: Soak) -> SoakReport {
    let env = [("RUST_LOG", "warn")];
    let mut app = if soak.durable {
        App::start_durable(Mode::Distributed, &env).await
    } else {
        App::start_with(Mode::Distributed, &env).await
    };
    let mut replica = app.start_replica().await;
    for _ in 0..3 {
        app.start_worker(&[]);
    }
    let stop = ReaderState::default();
    let completions = count_completions(app.redis.as_ref().unwrap().url(), stop.clone());
    wait_for(
        "the event reader to start",
        Duration::from_secs(10),
        || async {
            if stop.is_ready() {
                Ok(())
            } else {
                Err(String::new())
            }
        },
    )
    .await;

    let started = Instant::now();
    let (mut worker_kills, mut api_kills) = (0, 0);
    let mut next_kill = started + soak.kill_every;
    let mut submitted = 0;
    let deadline = started
        + Duration::from_secs(60)
        + soak.kill_every * 10
        + Duration::from_secs_f64(soak.tasks as f64 / soak.rate * 4.0);
    loop {
        let now = Instant::now();
        if now >= next_kill {
            app.kill_oldest_worker();
            app.start_worker(&[]);
            worker_kills += 1;
            // The two API processes take turns.
            if api_kills % 2 == 0 {
                app.kill_api();
                app.start_api();
                app.wait_healthy().await;
            } else {
                app.kill_oldest_replica();
                replica = app.start_replica().await;
            }
            api_kills += 1;
            next_kill = Instant::now() + soak.kill_every;
        }
        if submitted < soak.tasks {
            let due = started + Duration::from_secs_f64(submitted as f64 / soak.rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            let count = CHUNK.min(soak.tasks - submitted);
            let bases = [app.base.clone(), format!("http://127.0.0.1:{replica}")];
            submit_chunk(&app, &bases, submitted, count).await;
            submitted += count;
            continue;
        }
        let done = app.processed("generic").await as usize;
        if done >= soak.tasks {
            break;
        }
        let stuck = app
            .sql("SELECT status, count(*) FROM tasks WHERE status <> 'completed' GROUP BY status");
        assert!(
            Instant::now() < deadline,
            "{done} of {} completed by the deadline; the rest: {stuck}",
            soak.tasks
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();

    // Exactly once: as many rows as submitted, all completed within their attempts, and one
    // `task.completed` event for each.
    assert_eq!(app.processed("generic").await as usize, soak.tasks);
    let rows = app.sql("SELECT count(*), count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE attempt < 1 OR attempt > max_attempts), count(*) FILTER (WHERE attempt > 1) FROM tasks");
    let figures: Vec<usize> = rows
        .trim()
        .split('|')
        .map(|f| f.trim().parse().unwrap())
        .collect();
    assert_eq!(
        figures[..3],
        [soak.tasks, soak.tasks, 0],
        "rows, completed, attempts out of bounds"
    );
    let events_by = Instant::now() + Duration::from_secs(30);
    while completions.lock().unwrap().len() < soak.tasks && Instant::now() < events_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let missing: Vec<String> = {
        let seen = completions.lock().unwrap();
        app.sql("SELECT id FROM tasks")
            .lines()
            .filter(|id| !seen.contains_key(*id))
            .map(str::to_string)
            .collect()
    };
    if let Some(first) = missing.first() {
        let row = app.sql(&format!(
            "SELECT agent_id, attempt, started_at, finished_at FROM tasks WHERE id = '{first}'"
        ));
        panic!(
            "{} tasks completed without a task.completed event, e.g. {first}: {row}",
            missing.len()
        );
    }
    stop.stop();
    {
        let seen = completions.lock().unwrap();
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
        assert!(
            twice.is_empty(),
            "tasks completed more than once: {twice:?}"
        );
        assert_eq!(seen.len(), soak.tasks);
    }
    let latency = app.sql(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) \
         FROM (SELECT extract(epoch FROM finished_at - created_at) * 1000 AS ms FROM tasks) t",
    );
    let ms: Vec<f64> = latency
        .trim()
        .split('|')
        .map(|f| f.trim().parse().unwrap())
        .collect();
    SoakReport {
        elapsed,
        worker_kills,
        api_kills,
        p50_ms: ms[0],
        p99_ms: ms[1],
        retried: figures[3],
    }
}
