//! Waiting without sleeping: every wait is bounded and, when it runs out, panics with what it
//! waited for and the last state it saw.

use std::{fmt::Debug, time::Duration};

/// How long a poll rests between two looks.
const POLL: Duration = Duration::from_millis(20);

/// When a wait gives up.
struct Deadline {
    at: std::time::Instant,
    timeout: Duration,
}

impl Deadline {
    fn after(timeout: Duration) -> Self {
        Self {
            at: std::time::Instant::now() + timeout,
            timeout,
        }
    }

    /// Panics, naming what was awaited and the last state seen, once the deadline has passed.
    fn check(&self, what: &str, last: &str) {
        if std::time::Instant::now() >= self.at {
            panic!(
                "timed out after {:?} waiting for {what}; last seen: {last}",
                self.timeout
            );
        }
    }
}

/// Polls `probe` until it returns `Ok`, panicking with `what` and the last value seen when the
/// deadline passes. The probe may change what it captures (restart a process, count).
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Deadline::after(timeout);
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(seen) => deadline.check(what, &seen),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_for`] for plain functions (starting a server process).
pub fn wait_for_blocking<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Deadline::after(timeout);
    loop {
        match probe() {
            Ok(v) => return v,
            Err(seen) => deadline.check(what, &seen),
        }
        std::thread::sleep(POLL);
    }
}

/// Takes items from `next` (a stream's or a channel's next item, `None` once it has ended) and
/// hands each to `take`, until `take` returns `Some`. Panics with `what` and the last item seen
/// when `timeout` passes, or the items end, first.
pub async fn receive_until<T: Debug, R>(
    what: &str,
    timeout: Duration,
    mut next: impl AsyncFnMut() -> Option<T>,
    mut take: impl FnMut(T) -> Option<R>,
) -> R {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("nothing");
    loop {
        match tokio::time::timeout_at(deadline, next()).await {
            Ok(Some(item)) => {
                last = format!("{item:?}");
                if let Some(done) = take(item) {
                    return done;
                }
            }
            Ok(None) => panic!("the stream ended while waiting for {what}; last seen: {last}"),
            Err(_) => panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}"),
        }
    }
}
