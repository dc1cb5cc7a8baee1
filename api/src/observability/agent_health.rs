//! How well an agent performs, worked out from what the platform already records: the task rows
//! it finished (status, start, end), its heartbeats, and the status changes seen on the bus.
//!
//! - Efficiency: busy time on tasks that completed ÷ busy time on every task it finished, over
//!   the health window. Time spent on work that failed is wasted capacity, and a long failure
//!   wastes more than a quick one. When every task ended within the same millisecond (so no busy
//!   time was measured), the share of tasks completed stands in.
//! - Performance score, 0..1: half success rate, a quarter latency against the agent's own
//!   baseline, a quarter heartbeat regularity (see [`performance`]).
//! - Anomalies: flapping, an error burst, a latency spike (see [`anomalies`]).

use mcp_shared::{Settings, db::agents::Run};

/// Finished tasks in the window before an agent's failure share or efficiency means much (the
/// alerts judge by the same count).
pub const MIN_RUNS: usize = 5;
/// Completions in the window, and before it, needed to compare latencies.
pub const MIN_RECENT_COMPLETIONS: usize = 3;
pub const MIN_BASELINE_COMPLETIONS: usize = 5;
/// The window's median completion slower than this many times the baseline median is a spike.
pub const LATENCY_SPIKE_FACTOR: f64 = 3.0;

/// What an agent's finished tasks in the window add up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub finished: usize,
    pub completed: usize,
    pub busy_ms: i64,
    pub completed_busy_ms: i64,
    /// Durations of the completed ones (ms).
    pub completion_ms: Vec<i64>,
}

impl Window {
    pub fn of<'a>(runs: impl IntoIterator<Item = &'a Run>) -> Self {
        let mut w = Self::default();
        for r in runs {
            w.finished += 1;
            w.busy_ms += r.busy_ms;
            if r.completed {
                w.completed += 1;
                w.completed_busy_ms += r.busy_ms;
                w.completion_ms.push(r.busy_ms);
            }
        }
        w
    }

    /// Successful busy time over busy time; `None` when nothing finished in the window.
    pub fn efficiency(&self) -> Option<f64> {
        if self.finished == 0 {
            None
        } else if self.busy_ms > 0 {
            Some(self.completed_busy_ms as f64 / self.busy_ms as f64)
        } else {
            Some(self.completed as f64 / self.finished as f64)
        }
    }

    /// Completed over finished; 1 when nothing finished (nothing failed either).
    pub fn success_rate(&self) -> f64 {
        if self.finished == 0 {
            1.0
        } else {
            self.completed as f64 / self.finished as f64
        }
    }
}

fn median(values: &[i64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) as f64 / 2.0
    } else {
        v[mid] as f64
    })
}

/// The window's median completion time over the baseline's, when both have enough completions.
pub fn latency_ratio(window: &Window, baseline_ms: &[i64]) -> Option<f64> {
    if window.completion_ms.len() < MIN_RECENT_COMPLETIONS
        || baseline_ms.len() < MIN_BASELINE_COMPLETIONS
    {
        return None;
    }
    // A floor of 1 ms keeps sub-millisecond tasks from dividing by zero.
    let recent = median(&window.completion_ms)?.max(1.0);
    let baseline = median(baseline_ms)?.max(1.0);
    Some(recent / baseline)
}

/// Heartbeat regularity, 0..1: the share of expected beats received since registration (capped
/// at 1), times how fresh the last one is against the stale limit.
pub fn heartbeat_regularity(
    beats: i64,
    lifetime_ms: f64,
    interval_ms: f64,
    age_ms: f64,
    stale_after_ms: f64,
) -> f64 {
    // Registering counts as the first beat.
    let expected = (lifetime_ms / interval_ms.max(1.0)).floor() + 1.0;
    let received = ((beats as f64 + 1.0) / expected).min(1.0);
    let freshness = (1.0 - age_ms / stale_after_ms.max(1.0)).clamp(0.0, 1.0);
    received * freshness
}

/// The score: `0.5 × success rate + 0.25 × latency + 0.25 × heartbeat regularity`, where latency
/// is 1 at or under the baseline and baseline ÷ window median above it (1 without enough
/// completions to compare).
pub fn performance(success_rate: f64, latency_ratio: Option<f64>, regularity: f64) -> f64 {
    let latency = latency_ratio.map_or(1.0, |r| (1.0 / r).min(1.0));
    (0.5 * success_rate + 0.25 * latency + 0.25 * regularity).clamp(0.0, 1.0)
}

/// One anomaly of an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// `flapping`, `error_burst` or `latency_spike`.
    pub kind: &'static str,
    pub message: String,
    /// The measured figure and the threshold it crossed.
    pub value: f64,
    pub threshold: f64,
}

/// The agent's anomalies now:
/// - `flapping`: `MCP_ALERT_AGENT_FLAPS` status changes or more within the window;
/// - `error_burst`: more than `MCP_ALERT_AGENT_FAILURE_RATE` of at least [`MIN_RUNS`] tasks
///   finished in the window failed;
/// - `latency_spike`: the window's median completion over [`LATENCY_SPIKE_FACTOR`] times the
///   agent's baseline.
pub fn anomalies(
    s: &Settings,
    status_changes: u32,
    window: &Window,
    latency_ratio: Option<f64>,
) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let secs = s.health_window.as_secs_f64();
    if status_changes >= s.alert_agent_flaps {
        out.push(Anomaly {
            kind: "flapping",
            message: format!("changed status {status_changes} times in {secs:.0} s"),
            value: f64::from(status_changes),
            threshold: f64::from(s.alert_agent_flaps),
        });
    }
    let failure = 1.0 - window.success_rate();
    if window.finished >= MIN_RUNS && failure > s.alert_agent_failure_rate {
        out.push(Anomaly {
            kind: "error_burst",
            message: format!(
                "{} of the {} tasks it finished in {secs:.0} s failed",
                window.finished - window.completed,
                window.finished
            ),
            value: failure,
            threshold: s.alert_agent_failure_rate,
        });
    }
    if let Some(ratio) = latency_ratio.filter(|r| *r > LATENCY_SPIKE_FACTOR) {
        out.push(Anomaly {
            kind: "latency_spike",
            message: format!(
                "its median task took {ratio:.1}× its usual time over the last {secs:.0} s"
            ),
            value: ratio,
            threshold: LATENCY_SPIKE_FACTOR,
        });
    }
    out
}

/// The `system.alert` subject and message for an agent below the efficiency threshold.
pub fn efficiency_message(name: &str, window: &Window, efficiency: f64, s: &Settings) -> String {
    format!(
        "agent {name} spent {:.0}% of its busy time in the last {:.0} s on tasks that completed \
         ({} of {} tasks; threshold {:.0}%)",
        efficiency * 100.0,
        s.health_window.as_secs_f64(),
        window.completed,
        window.finished,
        s.alert_threshold_efficiency * 100.0
    )
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn runs(ok: &[i64], failed: &[i64]) -> Vec<Run> {
        let agent_id = Uuid::nil();
        ok.iter()
            .map(|&busy_ms| Run {
                agent_id,
                completed: true,
                busy_ms,
            })
            .chain(failed.iter().map(|&busy_ms| Run {
                agent_id,
                completed: false,
                busy_ms,
            }))
            .collect()
    }

    #[test]
    fn efficiency_weighs_busy_time_and_falls_back_to_counts() {
        let w = Window::of(&runs(&[100, 100], &[600]));
        assert_eq!(w.efficiency(), Some(0.25));
        assert!((w.success_rate() - 2.0 / 3.0).abs() < 1e-9);
        let instant = Window::of(&runs(&[0, 0, 0], &[0]));
        assert_eq!(instant.efficiency(), Some(0.75));
        assert_eq!(Window::default().efficiency(), None);
    }

    #[test]
    fn a_failing_slow_agent_scores_low_and_shows_its_anomalies() {
        let s = Settings::from_lookup(|_| None).unwrap();
        let window = Window::of(&runs(&[400, 500, 450], &[10; 7]));
        let ratio = latency_ratio(&window, &[100; 10]);
        assert_eq!(ratio, Some(4.5));
        let score = performance(window.success_rate(), ratio, 1.0);
        assert!(score < 0.5, "{score}");
        let kinds: Vec<&str> = anomalies(&s, 5, &window, ratio)
            .iter()
            .map(|a| a.kind)
            .collect();
        assert_eq!(kinds, ["flapping", "error_burst", "latency_spike"]);

        let healthy = Window::of(&runs(&[100; 10], &[]));
        let ratio = latency_ratio(&healthy, &[100; 10]);
        assert_eq!(performance(healthy.success_rate(), ratio, 1.0), 1.0);
        assert!(anomalies(&s, 1, &healthy, ratio).is_empty());
    }

    #[test]
    fn regularity_counts_missed_beats_and_silence() {
        // Just registered: nothing was due yet.
        assert_eq!(
            heartbeat_regularity(0, 500.0, 1000.0, 500.0, 3000.0),
            1.0 - 500.0 / 3000.0
        );
        // Ten intervals, five beats: about half, and silent past the stale limit: nothing.
        let half = heartbeat_regularity(5, 10_000.0, 1000.0, 0.0, 3000.0);
        assert!((half - 6.0 / 11.0).abs() < 1e-9, "{half}");
        assert_eq!(
            heartbeat_regularity(50, 10_000.0, 1000.0, 5000.0, 3000.0),
            0.0
        );
    }
}
