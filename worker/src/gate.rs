//! The priority gate: one pool of execution slots per worker process, shared by the four tier
//! workers of every capability. A freed slot goes to the most urgent tier with a waiter —
//! critical before high before medium before low — except that a waiter older than the
//! starvation bound is served first, so low work still moves under sustained urgent load.
//!
//! A few slots are kept for urgent work (critical and high): medium and low work never takes the
//! last of them, so an urgent task arriving behind a long backlog starts at once instead of
//! waiting for a slot to free up.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mcp_shared::domain::task::Priority;
use tokio::sync::oneshot;

#[derive(Debug)]
struct Waiter {
    since: Instant,
    grant: oneshot::Sender<()>,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// Slots only urgent work may take.
    reserved: usize,
    /// Waiters per tier, index = position in `Priority::ALL`.
    waiting: [VecDeque<Waiter>; 4],
}

#[derive(Debug, Clone)]
pub struct PriorityGate {
    state: Arc<Mutex<State>>,
    starvation: Duration,
}

/// A held slot; dropping it frees the slot for the next waiter.
#[derive(Debug)]
pub struct Slot {
    gate: PriorityGate,
}

/// A pending acquisition; see [`PriorityGate::acquire`].
struct Granted {
    rx: Option<oneshot::Receiver<()>>,
    gate: PriorityGate,
}

impl Drop for Granted {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take()
            && rx.try_recv().is_ok()
        {
            self.gate.release();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.release();
    }
}

fn tier_index(p: Priority) -> usize {
    Priority::ALL.iter().position(|t| *t == p).unwrap_or(3)
}

/// Tiers at or above this index (critical, high) are urgent.
const LAST_URGENT: usize = 1;

/// Slots kept for urgent work: an eighth of the pool, at least one when there are two or more.
fn urgent_reserve(slots: usize) -> usize {
    if slots < 2 { 0 } else { (slots / 8).max(1) }
}

impl State {
    /// Free slots a waiter of `tier` must leave: none for urgent work, the reserve for the rest.
    fn floor(&self, tier: usize) -> usize {
        if tier <= LAST_URGENT {
            0
        } else {
            self.reserved
        }
    }
}

impl PriorityGate {
    pub fn new(slots: usize, starvation: Duration) -> Self {
        let slots = slots.max(1);
        Self {
            state: Arc::new(Mutex::new(State {
                free: slots,
                reserved: urgent_reserve(slots),
                waiting: Default::default(),
            })),
            starvation,
        }
    }

    /// Waits for a slot for work of this tier.
    pub async fn acquire(&self, tier: Priority) -> Slot {
        let rx = {
            let mut s = self.state.lock().expect("gate lock");
            // Waiters that gave up (their job was dropped) hold no place in line.
            for queue in &mut s.waiting {
                queue.retain(|w| !w.grant.is_closed());
            }
            let t = tier_index(tier);
            // A free slot with nobody in line who may take it: take it. (Waiters left in line
            // while slots are free are medium or low work held back by the urgent reserve.)
            let in_line = (0..4).any(|u| !s.waiting[u].is_empty() && s.free > s.floor(u));
            if s.free > s.floor(t) && !in_line {
                s.free -= 1;
                return Slot { gate: self.clone() };
            }
            let (tx, rx) = oneshot::channel();
            s.waiting[tier_index(tier)].push_back(Waiter {
                since: Instant::now(),
                grant: tx,
            });
            rx
        };
        // If this future is dropped after the slot was granted but before it was taken, the
        // guard gives the slot back.
        let mut waiting = Granted {
            rx: Some(rx),
            gate: self.clone(),
        };
        // Sender dropped only if the gate is gone; then proceed rather than hang.
        let _ = waiting.rx.as_mut().expect("set above").await;
        waiting.rx = None;
        Slot { gate: self.clone() }
    }

    fn release(&self) {
        let mut s = self.state.lock().expect("gate lock");
        s.free += 1;
        while s.free > 0 {
            // None: nobody waits, or only work that may not take the urgent reserve.
            let Some(tier) = self.pick(&s) else { return };
            let Some(w) = s.waiting[tier].pop_front() else {
                return;
            };
            // A waiter that gave up (its job was dropped) does not consume the slot.
            if w.grant.send(()).is_ok() {
                s.free -= 1;
            }
        }
    }

    /// The tier to serve next: a starved waiter (oldest first), else the most urgent. Medium
    /// and low waiters are only picked while a slot beyond the urgent reserve is free.
    fn pick(&self, s: &State) -> Option<usize> {
        let now = Instant::now();
        let eligible = |t: &usize| !s.waiting[*t].is_empty() && s.free > s.floor(*t);
        let starved = (0..4)
            .filter(eligible)
            .filter_map(|t| s.waiting[t].front().map(|w| (t, w.since)))
            .filter(|(_, since)| now.duration_since(*since) >= self.starvation)
            .min_by_key(|(_, since)| *since)
            .map(|(t, _)| t);
        starved.or_else(|| (0..4).find(eligible))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urgent_tiers_are_served_first() {
        let gate = PriorityGate::new(1, Duration::from_secs(60));
        let held = gate.acquire(Priority::Low).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut joins = Vec::new();
        for tier in [
            Priority::Low,
            Priority::Medium,
            Priority::Critical,
            Priority::High,
        ] {
            let (g, o) = (gate.clone(), order.clone());
            joins.push(tokio::spawn(async move {
                let _slot = g.acquire(tier).await;
                o.lock().unwrap().push(tier);
            }));
            tokio::task::yield_now().await;
        }
        drop(held);
        for j in joins {
            j.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            [
                Priority::Critical,
                Priority::High,
                Priority::Medium,
                Priority::Low
            ]
        );
    }

    #[tokio::test]
    async fn urgent_work_starts_while_low_work_fills_the_pool() {
        let gate = PriorityGate::new(8, Duration::from_secs(60));
        // Low work takes every slot it may: all but the one kept for urgent work.
        let mut low = Vec::new();
        for _ in 0..7 {
            low.push(gate.acquire(Priority::Low).await);
        }
        let blocked = tokio::time::timeout(Duration::from_millis(50), gate.acquire(Priority::Low));
        assert!(blocked.await.is_err(), "low work may not take the reserve");
        let critical =
            tokio::time::timeout(Duration::from_secs(1), gate.acquire(Priority::Critical))
                .await
                .expect("critical work starts at once");
        drop(critical);
        // A freed slot goes back to waiting low work only beyond the reserve.
        let (g, done) = (gate.clone(), Arc::new(Mutex::new(false)));
        let d = done.clone();
        let waiter = tokio::spawn(async move {
            let _slot = g.acquire(Priority::Low).await;
            *d.lock().unwrap() = true;
        });
        tokio::task::yield_now().await;
        assert!(!*done.lock().unwrap());
        drop(low.pop());
        waiter.await.unwrap();
        assert!(*done.lock().unwrap());
    }

    #[tokio::test]
    async fn a_starved_waiter_goes_first() {
        let gate = PriorityGate::new(1, Duration::from_millis(20));
        let held = gate.acquire(Priority::High).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let (g, o) = (gate.clone(), order.clone());
        let low = tokio::spawn(async move {
            let _slot = g.acquire(Priority::Low).await;
            o.lock().unwrap().push(Priority::Low);
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        let (g, o) = (gate.clone(), order.clone());
        let critical = tokio::spawn(async move {
            let _slot = g.acquire(Priority::Critical).await;
            o.lock().unwrap().push(Priority::Critical);
        });
        tokio::task::yield_now().await;
        drop(held);
        low.await.unwrap();
        critical.await.unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            [Priority::Low, Priority::Critical],
            "the starved low waiter went first"
        );
    }
}
