//! A sliding window of outcomes (requests, or an agent's attempts) kept in a fixed ring of time
//! slots, so recording is O(1) and memory does not grow with traffic.

use std::time::{Duration, Instant};

/// Slots per window: the window slides in steps of 1/SLOTS of its length.
const SLOTS: usize = 60;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Which step of time this slot holds; a slot from an older step is stale and reset on use.
    step: u64,
    count: u64,
    errors: u64,
    /// Outcomes that carry a latency (long polls do not).
    timed: u64,
    latency_us: u64,
}

/// What the window holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowStats {
    pub count: u64,
    pub errors: u64,
    /// Mean latency of the timed outcomes, 0 when there were none.
    pub average_ms: f64,
}

impl WindowStats {
    /// Share of errors, 0 when empty.
    pub fn error_rate(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.errors as f64 / self.count as f64
        }
    }
}

#[derive(Debug)]
pub struct Window {
    origin: Instant,
    step: Duration,
    slots: std::sync::Mutex<[Slot; SLOTS]>,
}

impl Window {
    pub fn new(length: Duration) -> Self {
        Self {
            origin: Instant::now(),
            step: (length / SLOTS as u32).max(Duration::from_millis(1)),
            slots: std::sync::Mutex::new([Slot::default(); SLOTS]),
        }
    }

    fn step_at(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.origin).as_micros() / self.step.as_micros()) as u64
    }

    /// Records one outcome; `latency` is `None` for outcomes whose duration says nothing about
    /// responsiveness.
    pub fn record(&self, at: Instant, error: bool, latency: Option<Duration>) {
        let step = self.step_at(at);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut slots[(step % SLOTS as u64) as usize];
        if slot.step != step {
            *slot = Slot {
                step,
                ..Slot::default()
            };
        }
        slot.count += 1;
        slot.errors += u64::from(error);
        if let Some(l) = latency {
            slot.timed += 1;
            slot.latency_us += l.as_micros() as u64;
        }
    }

    /// Sums the slots still inside the window at `at`.
    pub fn stats(&self, at: Instant) -> WindowStats {
        let now = self.step_at(at);
        let oldest = now.saturating_sub(SLOTS as u64 - 1);
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let (mut count, mut errors, mut timed, mut latency_us) = (0, 0, 0, 0);
        for s in slots.iter().filter(|s| s.step >= oldest && s.step <= now) {
            count += s.count;
            errors += s.errors;
            timed += s.timed;
            latency_us += s.latency_us;
        }
        WindowStats {
            count,
            errors,
            average_ms: if timed == 0 {
                0.0
            } else {
                latency_us as f64 / timed as f64 / 1000.0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_leave_the_window_as_time_passes() {
        let w = Window::new(Duration::from_secs(60));
        let t0 = Instant::now();
        w.record(t0, false, Some(Duration::from_millis(10)));
        w.record(t0, true, Some(Duration::from_millis(30)));
        w.record(t0, false, None);
        let s = w.stats(t0);
        assert_eq!((s.count, s.errors), (3, 1));
        assert!((s.average_ms - 20.0).abs() < 1e-9, "{s:?}");
        assert!((s.error_rate() - 1.0 / 3.0).abs() < 1e-9);
        // Still inside after 30 s, gone after a full window.
        assert_eq!(w.stats(t0 + Duration::from_secs(30)).count, 3);
        assert_eq!(
            w.stats(t0 + Duration::from_secs(61)),
            WindowStats::default()
        );
        // A slot reused a window later starts from zero.
        w.record(t0 + Duration::from_secs(60), false, None);
        assert_eq!(w.stats(t0 + Duration::from_secs(60)).count, 1);
    }
}
