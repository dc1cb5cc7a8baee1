//! Recurring schedules: when a schedule's occurrences fall, and what it does when one is due
//! while the previous is still running or after the service was down.
//!
//! Cron expressions are read and stepped by `croner` in the schedule's IANA time zone, so
//! daylight-saving changes follow its rules (a time skipped by spring-forward runs at the first
//! real instant after the gap; a repeated hour runs once), not ours.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::string_enum;

string_enum! {
    /// What an occurrence does when the previous occurrence's task or execution has not finished.
    OverlapPolicy {
        Skip => "skip",
        Queue => "queue",
        CancelPrevious => "cancel_previous",
    }
}

string_enum! {
    /// What happens to occurrences that fell while no replica was running.
    CatchUpPolicy {
        Skip => "skip",
        One => "one",
        All => "all",
    }
}

string_enum! {
    /// What a schedule starts at each occurrence.
    TemplateKind {
        Task => "task",
        Pipeline => "pipeline",
    }
}

string_enum! {
    /// What became of one occurrence.
    Outcome {
        Firing => "firing",
        Fired => "fired",
        Skipped => "skipped",
        Missed => "missed",
        Failed => "failed",
    }
}

/// Most missed occurrences the `all` catch-up policy fires after downtime (the latest ones).
pub const MAX_CATCH_UP: usize = 10;
/// An occurrence found due later than this is a missed one (the service was down or stalled);
/// the catch-up policy decides whether it still runs.
pub const MISSED_AFTER: Duration = Duration::seconds(5);
/// Shortest interval: one second, the tick the firing loop works at.
pub const MIN_INTERVAL_SECONDS: u32 = 1;
/// Longest interval: a year.
pub const MAX_INTERVAL_SECONDS: u32 = 366 * 24 * 3600;

/// A schedule's field that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: &'static str,
    pub message: String,
}

#[derive(Debug, Clone)]
enum Timing {
    Cron(Box<croner::Cron>),
    /// Occurrences at `anchor + k × seconds`.
    Interval {
        seconds: u32,
        anchor: DateTime<Utc>,
    },
}

/// When a schedule's occurrences fall.
#[derive(Debug, Clone)]
pub struct Spec {
    timing: Timing,
    time_zone: Tz,
}

/// Reads an IANA time-zone name (`Europe/Paris`, `UTC`).
pub fn parse_time_zone(name: &str) -> Result<Tz, SpecError> {
    Tz::from_str(name).map_err(|_| SpecError {
        field: "time_zone",
        message: format!("{name:?} is not an IANA time zone name (e.g. \"UTC\", \"Europe/Paris\")"),
    })
}

impl Spec {
    /// From a cron expression (5 fields, or 6 with seconds first) read in `time_zone`.
    pub fn cron(expression: &str, time_zone: &str) -> Result<Self, SpecError> {
        let time_zone = parse_time_zone(time_zone)?;
        let cron = croner::Cron::from_str(expression).map_err(|e| SpecError {
            field: "cron",
            message: format!("{expression:?} is not a valid cron expression: {e}"),
        })?;
        // A pattern that can never match (`0 0 30 2 *`) would leave the schedule without a run.
        if cron
            .find_next_occurrence(&Utc::now().with_timezone(&time_zone), false)
            .is_err()
        {
            return Err(SpecError {
                field: "cron",
                message: format!("{expression:?} never matches a date"),
            });
        }
        Ok(Self {
            timing: Timing::Cron(Box::new(cron)),
            time_zone,
        })
    }

    /// Every `seconds`, counted from `anchor`. The time zone only matters for cron expressions
    /// but is still checked, so a schedule never stores a name it could not read back.
    pub fn interval(
        seconds: u32,
        anchor: DateTime<Utc>,
        time_zone: &str,
    ) -> Result<Self, SpecError> {
        let time_zone = parse_time_zone(time_zone)?;
        if !(MIN_INTERVAL_SECONDS..=MAX_INTERVAL_SECONDS).contains(&seconds) {
            return Err(SpecError {
                field: "interval_seconds",
                message: format!(
                    "interval_seconds must be between {MIN_INTERVAL_SECONDS} and {MAX_INTERVAL_SECONDS}"
                ),
            });
        }
        Ok(Self {
            timing: Timing::Interval { seconds, anchor },
            time_zone,
        })
    }

    /// The first occurrence strictly after `t`; `None` when the expression matches no later date.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.timing {
            Timing::Cron(cron) => cron
                .find_next_occurrence(&t.with_timezone(&self.time_zone), false)
                .ok()
                .map(|local| local.with_timezone(&Utc)),
            Timing::Interval { seconds, anchor } => {
                if t < *anchor {
                    return Some(*anchor);
                }
                let step = i64::from(*seconds) * 1000;
                let elapsed = (t - *anchor).num_milliseconds();
                Some(*anchor + Duration::milliseconds((elapsed / step + 1) * step))
            }
        }
    }

    /// The next `n` occurrences strictly after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    /// The occurrences from `first` (itself one) up to `now`, the latest `limit + 1` of them
    /// at most, oldest first; and how many older ones were dropped to stay within that.
    pub fn due(
        &self,
        first: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> (Vec<DateTime<Utc>>, u64) {
        let mut window = std::collections::VecDeque::with_capacity(limit + 1);
        let mut dropped = 0u64;
        let mut at = Some(first);
        while let Some(t) = at.filter(|t| *t <= now) {
            if window.len() > limit {
                window.pop_front();
                dropped += 1;
            }
            window.push_back(t);
            at = self.next_after(t);
        }
        (window.into(), dropped)
    }
}

/// Which of the due occurrences (oldest first, all `<= now`) fire under a catch-up policy. An
/// occurrence later than [`MISSED_AFTER`] is missed; the on-time one (at most one: the latest)
/// always fires.
pub fn to_fire(
    due: &[DateTime<Utc>],
    now: DateTime<Utc>,
    policy: CatchUpPolicy,
) -> Vec<DateTime<Utc>> {
    let Some(&latest) = due.last() else {
        return Vec::new();
    };
    let on_time = now - latest <= MISSED_AFTER;
    match policy {
        CatchUpPolicy::Skip if on_time => vec![latest],
        CatchUpPolicy::Skip => Vec::new(),
        CatchUpPolicy::One => vec![latest],
        CatchUpPolicy::All => due.iter().rev().take(MAX_CATCH_UP).rev().copied().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_at_two_in_new_york_crosses_the_spring_change() {
        // 2027-03-14: clocks in New York jump from 02:00 EST to 03:00 EDT, so 02:00 does not
        // exist that day; the run happens at the first real instant after the gap.
        let spec = Spec::cron("0 2 * * *", "America/New_York").unwrap();
        let runs = spec.upcoming(utc("2027-03-12T12:00:00Z"), 4);
        assert_eq!(
            runs,
            vec![
                utc("2027-03-13T07:00:00Z"), // 02:00 EST (UTC-5)
                utc("2027-03-14T07:00:00Z"), // 03:00 EDT: 02:00 was skipped
                utc("2027-03-15T06:00:00Z"), // 02:00 EDT (UTC-4)
                utc("2027-03-16T06:00:00Z"),
            ]
        );
    }

    #[test]
    fn the_repeated_autumn_hour_runs_once() {
        // 2027-11-07: 01:00-02:00 happens twice in New York; a 01:30 job runs once that day.
        let spec = Spec::cron("30 1 * * *", "America/New_York").unwrap();
        let runs = spec.upcoming(utc("2027-11-06T12:00:00Z"), 3);
        assert_eq!(runs[0], utc("2027-11-07T05:30:00Z")); // 01:30 EDT
        assert_eq!(runs[1], utc("2027-11-08T06:30:00Z")); // next day, 01:30 EST
    }

    #[test]
    fn bad_expressions_and_zones_name_their_field() {
        assert_eq!(Spec::cron("61 * * * *", "UTC").unwrap_err().field, "cron");
        assert_eq!(Spec::cron("0 0 30 2 *", "UTC").unwrap_err().field, "cron");
        assert_eq!(
            Spec::cron("0 * * * *", "Mars/Olympus").unwrap_err().field,
            "time_zone"
        );
        let anchor = Utc::now();
        assert_eq!(
            Spec::interval(0, anchor, "UTC").unwrap_err().field,
            "interval_seconds"
        );
    }

    #[test]
    fn intervals_count_from_their_anchor() {
        let anchor = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        let spec = Spec::interval(10, anchor, "UTC").unwrap();
        assert_eq!(spec.next_after(anchor - Duration::hours(1)), Some(anchor));
        assert_eq!(
            spec.next_after(anchor),
            Some(anchor + Duration::seconds(10))
        );
        assert_eq!(
            spec.next_after(anchor + Duration::seconds(25)),
            Some(anchor + Duration::seconds(30))
        );
    }

    #[test]
    fn catch_up_policies_pick_what_fires_after_downtime() {
        let anchor = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        let spec = Spec::interval(60, anchor, "UTC").unwrap();
        let now = anchor + Duration::seconds(60 * 30 + 1);
        let (due, dropped) = spec.due(anchor, now, MAX_CATCH_UP);
        assert_eq!(due.len(), MAX_CATCH_UP + 1);
        assert_eq!(dropped, 31 - (MAX_CATCH_UP as u64 + 1));
        assert_eq!(*due.last().unwrap(), anchor + Duration::seconds(60 * 30));
        // The latest occurrence is 1 s old: on time, so even `skip` fires it.
        assert_eq!(
            to_fire(&due, now, CatchUpPolicy::Skip),
            vec![*due.last().unwrap()]
        );
        assert_eq!(to_fire(&due, now, CatchUpPolicy::All).len(), MAX_CATCH_UP);
        let late = now + Duration::seconds(30);
        assert!(to_fire(&due, late, CatchUpPolicy::Skip).is_empty());
        assert_eq!(
            to_fire(&due, late, CatchUpPolicy::One),
            vec![*due.last().unwrap()]
        );
    }
}
