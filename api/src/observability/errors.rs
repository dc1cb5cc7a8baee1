//! Server-side errors broadcast as `error.occurred` on `/ws/system/events`: a task gone dead, a
//! pipeline stage failed, a dependency this replica cannot reach and its recovery.
//!
//! An error storm (a bad deploy killing thousands of tasks) must not flood subscribers, so every
//! kind (`code`) has its own token bucket: [`BURST`] at once, then one every [`REFILL`]. An
//! error over the budget is not sent; it is counted, and the count rides on the next error of
//! that kind that is sent (`suppressed`), or, when none comes, on an `errors_suppressed`
//! summary as soon as the bucket allows one. Every error is therefore either sent or counted.
//!
//! Who reports what:
//! - Task and stage failures: the dispatching leader, from the bus, so one failure is one
//!   error however many replicas read the stream.
//! - Dependencies: every replica probes its own, and tells its own subscribers (an outage of
//!   Redis is exactly when the shared stream cannot carry the news).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use mcp_shared::domain::event::Event;

/// Errors of one kind sent at once before the rate applies.
pub const BURST: u32 = 10;
/// After the burst, one error of a kind per this interval.
pub const REFILL: Duration = Duration::from_secs(2);

/// One kind's bucket and the errors it held back.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Self {
            tokens: f64::from(BURST),
            refilled: now,
            suppressed: 0,
        }
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.duration_since(self.refilled).as_secs_f64() / REFILL.as_secs_f64();
        self.tokens = (self.tokens + earned).min(f64::from(BURST));
        self.refilled = now;
    }

    fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The per-kind budgets.
#[derive(Debug, Default)]
pub struct ErrorLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl ErrorLimiter {
    /// Whether an error of `kind` may be sent now: `Some(n)` with the `n` errors of that kind
    /// held back since the last one sent, or `None` when this one is held back (and counted).
    pub fn admit(&self, kind: &str, now: Instant) -> Option<u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets
            .entry(kind.to_string())
            .or_insert_with(|| Bucket::new(now));
        if bucket.take(now) {
            Some(std::mem::take(&mut bucket.suppressed))
        } else {
            bucket.suppressed += 1;
            None
        }
    }

    /// The kinds with errors held back whose bucket now allows a summary, with their counts
    /// (reset: the summary reports them).
    pub fn due_summaries(&self, now: Instant) -> Vec<(String, u64)> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        for (kind, bucket) in buckets.iter_mut() {
            if bucket.suppressed > 0 && bucket.take(now) {
                due.push((kind.clone(), std::mem::take(&mut bucket.suppressed)));
            }
        }
        // A kind quiet for long enough is back to a full burst: forget it.
        buckets.retain(|_, b| {
            b.refill(now);
            b.suppressed > 0 || b.tokens < f64::from(BURST)
        });
        due
    }
}

/// The `error.occurred` to send for `error`, or `None` when the limit holds it back.
pub fn limited(limiter: &ErrorLimiter, error: Event, now: Instant) -> Option<Event> {
    let kind = error.data["code"].as_str().unwrap_or("error").to_string();
    // A dependency's outage and recovery share a budget per dependency, so a flapping Redis
    // cannot crowd out the news about the database.
    let key = match error.data["dependency"].as_str() {
        Some(dependency) => format!("dependency:{dependency}"),
        None => kind,
    };
    let suppressed = limiter.admit(&key, now)?;
    Some(if suppressed > 0 {
        error.with_suppressed(suppressed)
    } else {
        error
    })
}

/// A dependency's state as one replica's probes see it.
#[derive(Debug, Default)]
pub struct DependencyWatch {
    /// When each unreachable dependency was first found down.
    down_since: Mutex<HashMap<&'static str, Instant>>,
}

/// What a probe's outcome changed.
#[derive(Debug, PartialEq)]
pub enum Change {
    Lost(String),
    Recovered(Duration),
}

impl DependencyWatch {
    /// Takes one probe's outcome for `dependency`; returns the change, if it is one.
    pub fn observe(
        &self,
        dependency: &'static str,
        outcome: Result<(), String>,
        now: Instant,
    ) -> Option<Change> {
        let mut down = self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        match (outcome, down.get(dependency).copied()) {
            (Err(e), None) => {
                down.insert(dependency, now);
                Some(Change::Lost(e))
            }
            (Ok(()), Some(since)) => {
                down.remove(dependency);
                Some(Change::Recovered(now.duration_since(since)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dead_task() -> Event {
        let source = Event::new(
            mcp_shared::domain::event::EventType::TaskDead,
            json!({"task_id": "t", "type": "generic", "attempt": 1, "error": "boom"}),
        );
        Event::error_reported_by(&source).unwrap()
    }

    #[test]
    fn a_storm_is_cut_to_the_burst_and_every_error_is_sent_or_counted() {
        let limiter = ErrorLimiter::default();
        let t0 = Instant::now();
        let sent: Vec<Event> = (0..100)
            .filter_map(|_| limited(&limiter, dead_task(), t0))
            .collect();
        assert_eq!(sent.len(), BURST as usize);
        assert!(sent.iter().all(|e| e.data.get("suppressed").is_none()));
        // Another kind has its own budget.
        let stage = Event::dependency_unavailable("database", "r1", "refused");
        assert!(limited(&limiter, stage, t0).is_some());
        // Nothing is due before a token is back; then one summary carries the whole count.
        assert!(limiter.due_summaries(t0 + REFILL / 2).is_empty());
        let due = limiter.due_summaries(t0 + REFILL);
        assert_eq!(due, vec![("task_dead".to_string(), 90)]);
        // Later errors that get through say what was held back since the summary.
        let t1 = t0 + REFILL;
        assert!(limited(&limiter, dead_task(), t1).is_none());
        let next = limited(&limiter, dead_task(), t1 + REFILL).unwrap();
        assert_eq!(next.data["suppressed"], 1);
    }

    #[test]
    fn a_dependency_reports_each_outage_once_and_its_recovery() {
        let watch = DependencyWatch::default();
        let t0 = Instant::now();
        assert_eq!(watch.observe("redis", Ok(()), t0), None);
        assert_eq!(
            watch.observe("redis", Err("refused".into()), t0),
            Some(Change::Lost("refused".into()))
        );
        assert_eq!(
            watch.observe("redis", Err("refused".into()), t0 + REFILL),
            None
        );
        assert_eq!(
            watch.observe("redis", Ok(()), t0 + Duration::from_secs(3)),
            Some(Change::Recovered(Duration::from_secs(3)))
        );
        assert_eq!(watch.observe("redis", Ok(()), t0), None);
    }
}
