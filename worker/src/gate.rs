//! The priority gate: one pool of execution slots per worker process, shared by the four tier
//! workers of every capability. A freed slot goes to the most urgent tier with a waiter —
//! critical before high before medium before low — except that a waiter older than the
//! starvation bound is served first, so low work still moves under sustained urgent load.

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

impl PriorityGate {
    pub fn new(slots: usize, starvation: Duration) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                free: slots.max(1),
                waiting: Default::default(),
            })),
            starvation,
        }
    }

    /// Waits for a slot for work of this tier.
    pub async fn acquire(&self, tier: Priority) -> Slot {
        let rx = {
            let mut s = self.state.lock().expect("gate lock");
            if s.free > 0 && s.waiting.iter().all(VecDeque::is_empty) {
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

    /// The tier to serve next: a starved waiter (oldest first), else the most urgent.
    fn pick(&self, s: &State) -> Option<usize> {
        let now = Instant::now();
        let starved = (0..4)
            .filter_map(|t| s.waiting[t].front().map(|w| (t, w.since)))
            .filter(|(_, since)| now.duration_since(*since) >= self.starvation)
            .min_by_key(|(_, since)| *since)
            .map(|(t, _)| t);
        starved.or_else(|| (0..4).find(|t| !s.waiting[*t].is_empty()))
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
